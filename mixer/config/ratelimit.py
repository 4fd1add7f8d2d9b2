"""envoyproxy/ratelimit config files: parsed and checked like the reference service does.

A file is one ``domain`` with nested ``descriptors``; keys are checked against the same whitelist
as ratelimit's ``validKeys`` (plus the rules of its ``loadDescriptors``): a descriptor needs a key,
a key/value pair appears once per level, a rate limit has a valid unit unless it is unlimited.
"""

from __future__ import annotations

from typing import Any

from mixer.config.fields import Fields, Scope, fields, get_bool, get_int, get_list, get_str
from mixer.config.model import Location, RateLimitConfig, RateLimitDescriptor, RateLimitPolicy
from mixer.config.source import Path_

UNITS = ("second", "minute", "hour", "day", "week", "month", "year")
"""Units ratelimit accepts (its README documents the first four)."""

_DESCRIPTOR_KEYS = ("key", "value", "rate_limit", "shadow_mode", "detailed_metric", "descriptors")
_RATE_LIMIT_KEYS = ("unit", "requests_per_unit", "unlimited", "name", "replaces")
_MAX_UINT32 = 2**32 - 1


def parse_ratelimit(scope: Scope, data: dict[Any, Any]) -> RateLimitConfig:
    """Parse one rate-limit config document (problems go to `scope`)."""
    root = fields(scope, data, (), ("domain", "descriptors"))
    domain = get_str(scope, root, "domain", required=True)
    descriptors = _descriptors(scope, root, "descriptors")
    return RateLimitConfig(domain, descriptors, Location(scope.doc.path, scope.doc.line))


def _descriptors(scope: Scope, parent: Fields, key: str) -> tuple[RateLimitDescriptor, ...]:
    result: list[RateLimitDescriptor] = []
    seen: set[str] = set()
    for index, item in enumerate(get_list(scope, parent, key)):
        path = (*parent.path(key), index)
        f = _strict(scope, item, path, _DESCRIPTOR_KEYS)
        descriptor_key = get_str(scope, f, "key", required=True)
        value = get_str(scope, f, "value")
        composite = f"{descriptor_key}_{value}" if value else descriptor_key
        if descriptor_key and composite in seen:
            scope.error(path, f"duplicate descriptor {composite!r} at this level")
        seen.add(composite)
        rate_limit = None
        if f.get("rate_limit") is not None:
            rate_limit = _rate_limit(scope, f.get("rate_limit"), f.path("rate_limit"))
        result.append(
            RateLimitDescriptor(
                descriptor_key,
                value,
                rate_limit,
                get_bool(scope, f, "shadow_mode"),
                get_bool(scope, f, "detailed_metric"),
                _descriptors(scope, f, "descriptors"),
            )
        )
    return tuple(result)


def _rate_limit(scope: Scope, value: Any, path: Path_) -> RateLimitPolicy:
    f = _strict(scope, value, path, _RATE_LIMIT_KEYS)
    unlimited = get_bool(scope, f, "unlimited")
    unit = get_str(scope, f, "unit").lower()
    if unlimited and unit:
        scope.error(f.path("unit"), "must not be set when unlimited is true")
    elif not unlimited and unit not in UNITS:
        scope.error(
            f.path("unit"),
            f"invalid rate limit unit {unit!r} (expected {', '.join(UNITS)})"
            if unit
            else f"missing (expected {', '.join(UNITS)})",
        )
    requests = get_int(scope, f, "requests_per_unit")
    if requests > _MAX_UINT32:
        scope.error(f.path("requests_per_unit"), f"must be at most {_MAX_UINT32}")
    name = get_str(scope, f, "name")
    replaces: list[str] = []
    for index, item in enumerate(get_list(scope, f, "replaces")):
        entry = _strict(scope, item, (*f.path("replaces"), index), ("name",))
        replaced = get_str(scope, entry, "name", required=True)
        if replaced and replaced == name:
            scope.error(entry.path("name"), "a rate limit cannot replace itself")
        replaces.append(replaced)
    return RateLimitPolicy(unit, requests, unlimited, name, tuple(replaces))


def _strict(scope: Scope, value: Any, path: Path_, accepted: tuple[str, ...]) -> Fields:
    """`fields`, except that ratelimit's keys are snake_case only, as its YAML parser wants."""
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str) and key not in accepted and key.lower() != key:
                scope.error(
                    (*path, key), f"unknown key {key!r} (accepted: {', '.join(sorted(accepted))})"
                )
        value = {
            key: item
            for key, item in value.items()
            if not isinstance(key, str) or key.lower() == key
        }
    return fields(scope, value, path, accepted)
