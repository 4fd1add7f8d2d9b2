"""Mixer's config model: YAML files in a directory -> a validated, immutable `Snapshot`.

`load_config(directory, adapters)` returns the snapshot or raises `mixer.errors.ConfigError` with
every problem; `validate_directory` returns the problems (``path:line: kind/name: field: message``)
for ``mixer validate``; `check_config` gives both, plus notes about documents skipped on purpose.
"""

from mixer.config.model import (
    ActionSpec,
    AttributeInfo,
    AttributeManifest,
    FieldExpr,
    FieldProgram,
    HandlerSpec,
    HeaderOperation,
    HeaderOperationSpec,
    InstanceSpec,
    IstioService,
    Location,
    QuotaCharge,
    QuotaRule,
    QuotaSpec,
    QuotaSpecBinding,
    QuotaSpecReference,
    RandomSampling,
    RateLimitConfig,
    RateLimitDescriptor,
    RateLimitPolicy,
    RateLimitSampling,
    RuleSpec,
    Sampling,
    Snapshot,
    StringMatch,
)
from mixer.config.names import DEFAULT_NAMESPACE
from mixer.config.problems import ConfigProblem
from mixer.config.validate import (
    ConfigReport,
    check_config,
    default_vocabulary,
    load_config,
    validate_directory,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "ActionSpec",
    "AttributeInfo",
    "AttributeManifest",
    "ConfigProblem",
    "ConfigReport",
    "FieldExpr",
    "FieldProgram",
    "HandlerSpec",
    "HeaderOperation",
    "HeaderOperationSpec",
    "InstanceSpec",
    "IstioService",
    "Location",
    "QuotaCharge",
    "QuotaRule",
    "QuotaSpec",
    "QuotaSpecBinding",
    "QuotaSpecReference",
    "RandomSampling",
    "RateLimitConfig",
    "RateLimitDescriptor",
    "RateLimitPolicy",
    "RateLimitSampling",
    "RuleSpec",
    "Sampling",
    "Snapshot",
    "StringMatch",
    "check_config",
    "default_vocabulary",
    "load_config",
    "validate_directory",
]
