"""The validated, immutable config model: what `load_config` returns.

Every object here is a frozen dataclass and every mapping a read-only view, so one `Snapshot` can be
shared by all requests while a reload builds the next one. Names of handlers, instances and rules
are fully qualified (``name.kind.namespace``, see `mixer.config.names`); references inside the
snapshot (rule actions) are already resolved to those names.
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from mixer.expr import Program

FieldExpr: TypeAlias = "str | Mapping[str, FieldExpr]"
"""An instance field: an expression, or (map and message fields) a mapping of nested fields."""

FieldProgram: TypeAlias = "Program | Mapping[str, FieldProgram]"
"""The compiled form of a `FieldExpr`, with the same shape."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def freeze(value: Any) -> Any:
    """A deep read-only copy of YAML data: dicts become mapping views, lists become tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """A deep mutable copy of frozen data (plain dicts and lists), e.g. for an adapter's parser."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value


@dataclass(frozen=True)
class Location:
    """Where a resource starts: file path (as given under the config directory) and 1-based line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class HandlerSpec:
    """A configured adapter: ``kind: handler`` or a legacy per-adapter kind (``kind: denier``)."""

    name: str
    """Fully qualified, ``denyall.handler.istio-system`` (legacy: ``denyall.denier.<ns>``)."""
    short_name: str
    namespace: str
    kind: str
    """The kind it was declared with: ``handler`` or the adapter name for the legacy form."""
    adapter: str
    params: Mapping[str, Any]
    """The params as written in YAML (read-only)."""
    adapter_params: object
    """What the adapter's `parse_params` made of `params`; `build` takes this."""
    source: Location

    @property
    def signature(self) -> str:
        """A stable text of adapter + params: equal signatures can share one built handler."""
        return json.dumps(
            {"adapter": self.adapter, "params": thaw(self.params)}, sort_keys=True, default=str
        )


@dataclass(frozen=True)
class InstanceSpec:
    """A template instance: ``kind: instance`` or a legacy per-template kind (``kind: metric``)."""

    name: str
    """Fully-qualified name, e.g. ``requestcount.instance.istio-system``."""
    short_name: str
    """Quota instances are matched to `CheckRequest.quotas` keys by this name."""
    namespace: str
    kind: str
    template: str
    params: Mapping[str, FieldExpr]
    """Template field (snake_case) -> expression text; map/message fields hold nested mappings."""
    programs: Mapping[str, FieldProgram]
    """The same shape as `params`, compiled."""
    dialect: str
    """``mixer``, ``cel`` or ``compat``, from the ``policy.istio.io/lang`` annotation."""
    source: Location
    attribute_bindings: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    """Attribute-generating templates only: attribute -> ``$out.<field>`` expression, as text."""
    binding_programs: Mapping[str, Program] = field(default_factory=lambda: _EMPTY)
    """The same bindings compiled, ``$out.<field>`` read as `mixer.templates.output_prefix`
    plus the field; each one's type is the attribute's."""


@dataclass(frozen=True)
class ActionSpec:
    """One rule action: send these instances to this handler."""

    handler: str
    """Handler FQN."""
    instances: tuple[str, ...]
    """Instance FQNs, in the order written."""
    name: str = ""
    """Optional action name (Mixer used it for CHECK_WITH_OUTPUT results)."""


class HeaderOperation(enum.Enum):
    """What a header operation does (numbers as in ``istio.mixer.v1.HeaderOperation``)."""

    REPLACE = 0
    REMOVE = 1
    APPEND = 2


@dataclass(frozen=True)
class HeaderOperationSpec:
    """A request/response header operation template of a rule (applied when Check is OK)."""

    name: str
    values: tuple[str, ...]
    programs: tuple[Program, ...]
    operation: HeaderOperation = HeaderOperation.REPLACE


@dataclass(frozen=True)
class RandomSampling:
    """Report a fraction of requests: ``numerator / denominator`` (denominator 100 or 10000)."""

    numerator: int
    denominator: int
    attribute_expression: str = ""
    program: Program | None = None
    use_independent_randomness: bool = False


@dataclass(frozen=True)
class RateLimitSampling:
    """Report everything up to `max_unsampled_entries` per window, then 1 in `sampling_rate`."""

    sampling_duration: datetime.timedelta
    max_unsampled_entries: int
    sampling_rate: int


@dataclass(frozen=True)
class Sampling:
    """A rule's sampling (telemetry rules only in Mixer)."""

    random: RandomSampling | None = None
    rate_limit: RateLimitSampling | None = None


@dataclass(frozen=True)
class RuleSpec:
    """A rule: when `match` is true, send the actions' instances to their handlers."""

    name: str
    """Fully-qualified name, e.g. ``denyreviewsv3.rule.istio-system``."""
    short_name: str
    namespace: str
    match_text: str
    """The match expression as written ("" when absent)."""
    match: Program
    """The compiled match; an absent or empty match is compiled as ``true``."""
    dialect: str
    actions: tuple[ActionSpec, ...]
    source: Location
    request_header_operations: tuple[HeaderOperationSpec, ...] = ()
    response_header_operations: tuple[HeaderOperationSpec, ...] = ()
    sampling: Sampling | None = None
    dry_run: bool = False
    """``istio.io/dry-run: "true"``: check actions are evaluated and counted, never deny."""

    @property
    def always_matches(self) -> bool:
        """True when the match is empty or exactly ``true`` (no evaluation needed)."""
        return self.match_text.strip() in ("", "true")


@dataclass(frozen=True)
class AttributeInfo:
    """One attribute of a manifest: its ValueType name and description."""

    value_type: str
    description: str = ""


@dataclass(frozen=True)
class AttributeManifest:
    """An ``attributemanifest``: attribute names and types that expressions may use."""

    name: str
    namespace: str
    revision: str
    attributes: Mapping[str, AttributeInfo]
    source: Location


@dataclass(frozen=True)
class StringMatch:
    """One clause entry of a QuotaSpec match."""

    kind: Literal["exact", "prefix", "regex"]
    value: str


@dataclass(frozen=True)
class QuotaCharge:
    """Ask for `charge` units of the quota named `quota` (a quota instance's short name)."""

    quota: str
    charge: int = 1


@dataclass(frozen=True)
class QuotaRule:
    """Quotas applied when any clause matches (no clause = every request)."""

    match: tuple[Mapping[str, StringMatch], ...]
    quotas: tuple[QuotaCharge, ...]


@dataclass(frozen=True)
class QuotaSpec:
    """A client-side ``QuotaSpec`` (which quotas a proxy asks for in its Check calls)."""

    name: str
    namespace: str
    rules: tuple[QuotaRule, ...]
    source: Location


@dataclass(frozen=True)
class IstioService:
    """A service selector of a QuotaSpecBinding (``service: "*"`` = all services)."""

    name: str = ""
    namespace: str = ""
    domain: str = ""
    service: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class QuotaSpecReference:
    """A QuotaSpec named by a binding (namespace defaults to the binding's)."""

    name: str
    namespace: str


@dataclass(frozen=True)
class QuotaSpecBinding:
    """Binds QuotaSpecs to services."""

    name: str
    namespace: str
    services: tuple[IstioService, ...]
    quota_specs: tuple[QuotaSpecReference, ...]
    source: Location


@dataclass(frozen=True)
class RateLimitPolicy:
    """The ``rate_limit`` of an envoyproxy/ratelimit descriptor."""

    unit: str
    """``second``, ``minute``, ``hour``, ``day``, ``week``, ``month``, ``year``; "" if unlimited."""
    requests_per_unit: int
    unlimited: bool = False
    name: str = ""
    replaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class RateLimitDescriptor:
    """One level of an envoyproxy/ratelimit descriptor tree."""

    key: str
    value: str = ""
    rate_limit: RateLimitPolicy | None = None
    shadow_mode: bool = False
    detailed_metric: bool = False
    descriptors: tuple[RateLimitDescriptor, ...] = ()
    quota_mode: bool = False
    """Over the limit fails the request only when every quota-mode descriptor of it is over."""
    value_to_metric: bool = False
    """The request's value (not the pattern or nothing) names this level in rule statistics."""
    share_threshold: bool = False
    """On a wildcard value: every matching value counts in one shared bucket."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Free-form; returned in the response's dynamic metadata when the rule passes."""


@dataclass(frozen=True)
class RateLimitConfig:
    """An envoyproxy/ratelimit config file (recognised by its top-level ``domain`` key)."""

    domain: str
    descriptors: tuple[RateLimitDescriptor, ...]
    source: Location


@dataclass(frozen=True)
class Snapshot:
    """A whole validated config directory.

    `vocabulary` maps attribute names to ValueType names (from the directory's attribute
    manifests, or Istio 1.4's defaults when it has none). `notes` lists documents that were
    skipped on purpose (e.g. a Kubernetes ``Service`` in a config file). `revision` is for the
    caller to fill (e.g. the git commit of the directory) with `dataclasses.replace`.
    """

    directory: str
    handlers: Mapping[str, HandlerSpec]
    instances: Mapping[str, InstanceSpec]
    rules: tuple[RuleSpec, ...]
    attribute_manifests: tuple[AttributeManifest, ...]
    vocabulary: Mapping[str, str]
    quota_specs: tuple[QuotaSpec, ...] = ()
    quota_spec_bindings: tuple[QuotaSpecBinding, ...] = ()
    rate_limit_configs: tuple[RateLimitConfig, ...] = ()
    default_namespace: str = "istio-system"
    notes: tuple[str, ...] = ()
    revision: str = ""
