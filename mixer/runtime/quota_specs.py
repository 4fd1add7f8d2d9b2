"""QuotaSpec / QuotaSpecBinding: which quotas a request is charged when the caller names none.

Istio's proxy read these to fill its Check calls' quota map. Envoy's ext_authz filter sends no
quota map, so mixer applies them itself: a binding selects services (``service: "*"`` = all;
else ``name.namespace.<domain>`` or the ``service`` FQDN) compared with the request's
destination service host; each bound spec's rules add ``quotas[quota] += charge`` when any of
their match clauses holds (no clause = every request).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import re2

from mixer.config.model import QuotaSpec, QuotaSpecBinding, StringMatch

_DEFAULT_DOMAIN = "svc.cluster.local"


@dataclass(frozen=True)
class _CompiledMatch:
    attribute: str
    map_key: str | None
    kind: str
    value: str
    regex: object | None

    def matches(self, bag: Mapping[str, object]) -> bool:
        value = bag.get(self.attribute)
        if self.map_key is not None:
            value = value.get(self.map_key) if isinstance(value, Mapping) else None
        if not isinstance(value, str):
            return False
        if self.kind == "exact":
            return value == self.value
        if self.kind == "prefix":
            return value.startswith(self.value)
        return self.regex is not None and self.regex.fullmatch(value) is not None  # type: ignore[attr-defined]


def _compile_match(attribute: str, match: StringMatch) -> _CompiledMatch:
    name, key = attribute, None
    if attribute.endswith("]") and "[" in attribute:
        name, _, rest = attribute[:-1].partition("[")
        key = rest.strip("\"'")
    regex = re2.compile(match.value) if match.kind == "regex" else None
    return _CompiledMatch(name, key, match.kind, match.value, regex)


@dataclass(frozen=True)
class _Rule:
    clauses: tuple[tuple[_CompiledMatch, ...], ...]
    quotas: tuple[tuple[str, int], ...]

    def applies(self, bag: Mapping[str, object]) -> bool:
        if not self.clauses:
            return True
        return any(all(m.matches(bag) for m in clause) for clause in self.clauses)


class QuotaSelector:
    """Chooses a request's quotas from the config's QuotaSpecs and their bindings."""

    def __init__(self, specs: Sequence[QuotaSpec], bindings: Sequence[QuotaSpecBinding]) -> None:
        by_ref = {(s.name, s.namespace): s for s in specs}
        self._all: list[_Rule] = []
        self._by_host: dict[str, list[_Rule]] = {}
        for binding in bindings:
            rules = [
                _Rule(
                    tuple(
                        tuple(_compile_match(attr, m) for attr, m in clause.items())
                        for clause in rule.match
                    ),
                    tuple((q.quota, q.charge) for q in rule.quotas),
                )
                for ref in binding.quota_specs
                if (spec := by_ref.get((ref.name, ref.namespace or binding.namespace)))
                for rule in spec.rules
            ]
            for service in binding.services:
                if service.service == "*":
                    self._all.extend(rules)
                    continue
                host = service.service or ".".join(
                    (service.name, service.namespace or binding.namespace,
                     service.domain or _DEFAULT_DOMAIN)
                )  # fmt: skip
                self._by_host.setdefault(host, []).extend(rules)

    def __bool__(self) -> bool:
        return bool(self._all or self._by_host)

    def quotas_for(self, bag: Mapping[str, object]) -> dict[str, int]:
        """The quota name -> amount map for this request (empty when nothing is bound)."""
        host = bag.get("destination.service.host") or bag.get("destination.service")
        rules = self._all + (self._by_host.get(host, []) if isinstance(host, str) else [])
        out: dict[str, int] = {}
        for rule in rules:
            if rule.applies(bag):
                for name, charge in rule.quotas:
                    out[name] = out.get(name, 0) + charge
        return out
