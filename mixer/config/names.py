"""Names in Mixer's config model: kinds, fully-qualified names, reference resolution, dialects.

A resource's fully-qualified name (FQN) is ``name.kind.namespace``. New-style resources use the kind
``handler`` / ``instance``; the legacy Istio 1.0 forms use the adapter or template as their kind
(``denyall.denier.istio-system``, ``requestcount.metric.istio-system``). Rules refer to handlers and
instances by FQN, by ``name.kind`` or ``name.namespace``, or by a bare name in the rule's namespace,
resolved like Mixer's ``getCanonicalRef``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

DEFAULT_NAMESPACE: Final = "istio-system"
"""Mixer's ``--configDefaultNamespace``: used when metadata.namespace is missing."""

LANG_ANNOTATION: Final = "policy.istio.io/lang"
"""The per-resource annotation that selects the expression dialect."""
DRY_RUN_ANNOTATION: Final = "istio.io/dry-run"
"""A rule annotation (Istio's name for the same idea on AuthorizationPolicy): ``"true"`` makes
the rule's check actions evaluated and counted but never deny."""

HANDLER: Final = "handler"
INSTANCE: Final = "instance"
RULE: Final = "rule"
ATTRIBUTE_MANIFEST: Final = "attributemanifest"
QUOTA_SPEC: Final = "QuotaSpec"
QUOTA_SPEC_BINDING: Final = "QuotaSpecBinding"

MIXER_KINDS: Final = (HANDLER, INSTANCE, RULE, ATTRIBUTE_MANIFEST, QUOTA_SPEC, QUOTA_SPEC_BINDING)
"""The kinds this loader reads (besides the legacy per-adapter and per-template kinds)."""

CLIENT_KINDS: Final = frozenset({"HTTPAPISpec", "HTTPAPISpecBinding"})
"""config.istio.io kinds consumed by the proxy, not by Mixer: skipped with a note."""

OUT_OF_PROCESS_KINDS: Final = frozenset({"adapter", "template"})
"""Descriptors of out-of-process adapters and templates, which mixer does not support."""

CONFIG_GROUP: Final = "config.istio.io"

# Adapters and templates Istio (1.0-1.4) compiled in. A legacy kind naming one of these that our
# registry lacks gets "adapter 'X' is not supported" rather than "unknown kind".
KNOWN_ISTIO_ADAPTERS: Final = frozenset(
    {
        "apigee",
        "bypass",
        "circonus",
        "cloudmonitor",
        "cloudwatch",
        "denier",
        "dogstatsd",
        "fluentd",
        "kubernetesenv",
        "listchecker",
        "memquota",
        "noop",
        "opa",
        "prometheus",
        "rbac",
        "redisquota",
        "servicecontrol",
        "signalfx",
        "solarwinds",
        "stackdriver",
        "statsd",
        "stdio",
        "zipkin",
    }
)
KNOWN_ISTIO_TEMPLATES: Final = frozenset(
    {
        "analytics",
        "apikey",
        "authorization",
        "checknothing",
        "edge",
        "kubernetes",
        "listentry",
        "logentry",
        "metric",
        "quota",
        "reportnothing",
        "servicecontrolreport",
        "tracespan",
    }
)

_DIALECTS: Final = {"CEL": "cel", "COMPAT": "compat", "CEXL": "mixer", "MIXER": "mixer"}

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def fqn(name: str, kind: str, namespace: str) -> str:
    """The fully-qualified name ``name.kind.namespace``."""
    return f"{name}.{kind}.{namespace}"


def snake(key: str) -> str:
    """A proto-JSON key in snake_case form: ``compiledAdapter`` -> ``compiled_adapter``."""
    return _CAMEL_BOUNDARY.sub("_", key).lower()


def camel(key: str) -> str:
    """A snake_case key in camelCase form: ``compiled_adapter`` -> ``compiledAdapter``."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def dialect_for(annotations: Mapping[str, str]) -> str:
    """The expression dialect (``mixer``, ``cel`` or ``compat``) a resource's annotations select.

    Raises ValueError for a value Istio would silently have treated as the default, because a
    misspelt ``CEL`` would otherwise change the meaning of every expression in the resource.
    """
    value = annotations.get(LANG_ANNOTATION)
    if value is None:
        return "mixer"
    dialect = _DIALECTS.get(value.strip().upper())
    if dialect is None:
        raise ValueError(f"unknown expression language {value!r} (expected CEL, COMPAT or CEXL)")
    return dialect


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a reference: the FQN found, or the names that were tried."""

    found: str | None
    tried: tuple[str, ...]
    ambiguous: tuple[str, ...] = ()


class NameIndex:
    """Resources of one category (handlers or instances) by FQN, for resolving references.

    `base_kind` is the new-style kind (``handler`` / ``instance``); `kinds` maps every FQN to the
    kind it was declared with (the base kind or a legacy adapter/template kind).
    """

    def __init__(self, base_kind: str, fqns: Iterable[tuple[str, str, str]]) -> None:
        self.base_kind = base_kind
        self._by_fqn: set[str] = set()
        self._by_short: dict[tuple[str, str], list[str]] = {}
        for name, kind, namespace in fqns:
            full = fqn(name, kind, namespace)
            self._by_fqn.add(full)
            self._by_short.setdefault((name, namespace), []).append(full)

    def __contains__(self, full: object) -> bool:
        return full in self._by_fqn

    def resolve(self, ref: str, namespace: str) -> Resolution:
        """Resolve `ref`, written in a resource of `namespace`, to an FQN.

        - ``a.b.c`` (three or more parts) is an FQN.
        - ``a.b`` is tried as ``name.kind`` in `namespace` first, then as ``name.namespace``.
        - ``a`` is ``a.<base kind>.<namespace>``.
        A name without a kind also finds a unique legacy-kind resource of that name (Mixer itself
        required the kind there; accepting the unique match costs nothing and reads naturally).
        """
        parts = ref.split(".")
        if len(parts) >= 3:
            return Resolution(ref if ref in self._by_fqn else None, (ref,))
        if len(parts) == 2:
            name, second = parts
            as_kind = fqn(name, second, namespace)
            if as_kind in self._by_fqn:
                return Resolution(as_kind, (as_kind,))
            return self._short(name, second, (as_kind,))
        return self._short(ref, namespace, ())

    def _short(self, name: str, namespace: str, tried: tuple[str, ...]) -> Resolution:
        preferred = fqn(name, self.base_kind, namespace)
        tried = (*tried, preferred)
        if preferred in self._by_fqn:
            return Resolution(preferred, tried)
        candidates = self._by_short.get((name, namespace), [])
        if len(candidates) == 1:
            return Resolution(candidates[0], tried)
        return Resolution(None, tried, tuple(sorted(candidates)))


def dry_run_for(annotations: Mapping[str, str]) -> bool:
    """Whether a rule's annotations put it in dry-run; ValueError for anything but true/false
    (a misspelt value must not silently enforce, nor silently stop enforcing)."""
    value = annotations.get(DRY_RUN_ANNOTATION)
    if value is None:
        return False
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f'{DRY_RUN_ANNOTATION} must be "true" or "false", got {value!r}')
    return text == "true"
