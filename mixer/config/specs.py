"""Parsing attribute manifests, QuotaSpecs and QuotaSpecBindings."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import re2

from mixer.config.drafts import Header
from mixer.config.fields import Scope, describe, fields, get_int, get_list, get_str, get_str_map
from mixer.config.model import (
    AttributeInfo,
    AttributeManifest,
    IstioService,
    QuotaCharge,
    QuotaRule,
    QuotaSpec,
    QuotaSpecBinding,
    QuotaSpecReference,
    StringMatch,
)
from mixer.config.source import Path_
from mixer.expr.value_types import ATTRIBUTE_TYPES

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the problem is reported; RE2 would also log it to stderr


def parse_manifest(scope: Scope, header: Header, spec: Any) -> AttributeManifest:
    """A ``kind: attributemanifest`` resource."""
    f = fields(scope, spec, ("spec",), ("revision", "name", "attributes"))
    revision = f.get("revision")
    if revision is not None and not isinstance(revision, str | int):
        scope.error(f.path("revision"), f"expected a string, got {describe(revision)}")
    get_str(scope, f, "name")
    attributes: dict[str, AttributeInfo] = {}
    raw = f.get("attributes")
    if raw is None:
        scope.error(f.path("attributes"), "missing")
    elif not isinstance(raw, dict):
        scope.error(f.path("attributes"), f"expected a mapping, got {describe(raw)}")
    else:
        for name, info in raw.items():
            path = (*f.path("attributes"), str(name))
            info_fields = fields(scope, info, path, ("valueType", "description"))
            if info is None:
                scope.error(path, "missing valueType")
                continue
            value_type = get_str(scope, info_fields, "value_type", required=True)
            description = get_str(scope, info_fields, "description")
            if value_type and value_type not in ATTRIBUTE_TYPES:
                scope.error(
                    info_fields.path("value_type"),
                    f"unknown value type {value_type!r} (expected one of "
                    f"{', '.join(sorted(ATTRIBUTE_TYPES))})",
                )
                continue
            attributes[str(name)] = AttributeInfo(value_type, description)
    return AttributeManifest(
        header.name,
        header.namespace,
        "" if revision is None else str(revision),
        _frozen(attributes),
        header.location,
    )


def parse_quota_spec(scope: Scope, header: Header, spec: Any) -> QuotaSpec:
    """A ``kind: QuotaSpec`` resource."""
    f = fields(scope, spec, ("spec",), ("rules",))
    rules: list[QuotaRule] = []
    for index, item in enumerate(get_list(scope, f, "rules")):
        path = (*f.path("rules"), index)
        rule = fields(scope, item, path, ("match", "quotas"))
        clauses = [
            _clause(scope, clause, (*rule.path("match"), position))
            for position, clause in enumerate(get_list(scope, rule, "match"))
        ]
        quotas: list[QuotaCharge] = []
        for position, quota in enumerate(get_list(scope, rule, "quotas")):
            q = fields(scope, quota, (*rule.path("quotas"), position), ("quota", "charge"))
            name = get_str(scope, q, "quota", required=True)
            quotas.append(QuotaCharge(name, get_int(scope, q, "charge", default=1, minimum=1)))
        if not quotas:
            scope.error(rule.path("quotas"), "missing (a quota rule needs quotas)")
        rules.append(QuotaRule(tuple(clauses), tuple(quotas)))
    return QuotaSpec(header.name, header.namespace, tuple(rules), header.location)


def parse_binding(
    scope: Scope, header: Header, spec: Any
) -> tuple[QuotaSpecBinding, tuple[Path_, ...]]:
    """A ``kind: QuotaSpecBinding`` resource, with the path of each quotaSpecs reference."""
    f = fields(scope, spec, ("spec",), ("services", "quotaSpecs"))
    services: list[IstioService] = []
    for index, item in enumerate(get_list(scope, f, "services")):
        s = fields(
            scope,
            item,
            (*f.path("services"), index),
            ("name", "namespace", "domain", "service", "labels"),
        )
        services.append(
            IstioService(
                get_str(scope, s, "name"),
                get_str(scope, s, "namespace"),
                get_str(scope, s, "domain"),
                get_str(scope, s, "service"),
                _frozen(get_str_map(scope, s, "labels")),
            )
        )
    references: list[QuotaSpecReference] = []
    paths: list[Path_] = []
    for index, item in enumerate(get_list(scope, f, "quota_specs")):
        r = fields(scope, item, (*f.path("quota_specs"), index), ("name", "namespace"))
        paths.append(r.path("name"))
        references.append(
            QuotaSpecReference(
                get_str(scope, r, "name", required=True),
                get_str(scope, r, "namespace") or header.namespace,
            )
        )
    if not services:
        scope.error(f.path("services"), "missing (a binding needs services)")
    if not references:
        scope.error(f.path("quota_specs"), "missing (a binding needs quotaSpecs)")
    binding = QuotaSpecBinding(
        header.name, header.namespace, tuple(services), tuple(references), header.location
    )
    return binding, tuple(paths)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def _clause(scope: Scope, value: Any, path: Path_) -> Mapping[str, StringMatch]:
    f = fields(scope, value, path, ("clause",))
    raw = f.get("clause")
    result: dict[str, StringMatch] = {}
    if not isinstance(raw, dict):
        scope.error(f.path("clause"), f"expected a mapping of attributes, got {describe(raw)}")
        return _frozen(result)
    for attribute, match in raw.items():
        match_path = (*f.path("clause"), str(attribute))
        m = fields(scope, match, match_path, ("exact", "prefix", "regex"))
        given = [key for key in ("exact", "prefix", "regex") if key in m]
        if len(given) != 1:
            scope.error(match_path, "needs exactly one of exact, prefix or regex")
            continue
        text = get_str(scope, m, given[0])
        if "regex" in m:
            try:
                re2.compile(text, _RE2_OPTIONS)
            except re2.error as err:
                reason = err.args[0] if err.args else err
                if isinstance(reason, bytes):
                    reason = reason.decode("utf-8", "replace")
                scope.error(m.path("regex"), f"invalid regex {text!r}: {reason}")
                continue
            result[str(attribute)] = StringMatch("regex", text)
        else:
            result[str(attribute)] = StringMatch("exact" if "exact" in m else "prefix", text)
    return _frozen(result)
