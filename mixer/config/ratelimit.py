"""envoyproxy/ratelimit config files: parsed and checked like the reference service does.

A file is one ``domain`` with nested ``descriptors``; keys are checked against the same whitelist
as ratelimit's ``validKeys`` (plus the rules of its ``loadDescriptors``): a descriptor needs a key,
a key/value pair appears once per level, a rate limit has a valid unit unless it is unlimited
(and must not name one when it is), ``share_threshold`` needs a wildcard value.

Text fields (``domain``, ``key``, ``value``, ``unit``, ``name``) take any scalar but a float and
read it as written, the way ratelimit's YAML decoder fills a string field: ``value: 200`` is
"200", ``value: yes`` is "yes", ``key: 404`` is "404".
"""

from __future__ import annotations

import datetime
from typing import Any

from mixer.config.fields import Fields, Scope, describe, fields, get_bool, get_int, get_list
from mixer.config.model import Location, RateLimitConfig, RateLimitDescriptor, RateLimitPolicy
from mixer.config.source import Path_

UNITS = ("second", "minute", "hour", "day", "week", "month", "year")
"""Units ratelimit accepts (its README documents the first four)."""

_DESCRIPTOR_KEYS = (
    "key",
    "value",
    "rate_limit",
    "shadow_mode",
    "quota_mode",
    "detailed_metric",
    "value_to_metric",
    "share_threshold",
    "metadata",
    "descriptors",
)
_RATE_LIMIT_KEYS = ("unit", "requests_per_unit", "unlimited", "name", "replaces")
_MAX_UINT32 = 2**32 - 1


def parse_ratelimit(scope: Scope, data: dict[Any, Any]) -> RateLimitConfig:
    """Parse one rate-limit config document (problems go to `scope`)."""
    root = fields(scope, data, (), ("domain", "descriptors"))
    domain = _text(scope, root, "domain", required=True)
    descriptors = _descriptors(scope, root, "descriptors")
    return RateLimitConfig(domain, descriptors, Location(scope.doc.path, scope.doc.line))


def _descriptors(scope: Scope, parent: Fields, key: str) -> tuple[RateLimitDescriptor, ...]:
    result: list[RateLimitDescriptor] = []
    seen: set[str] = set()
    for index, item in enumerate(get_list(scope, parent, key)):
        path = (*parent.path(key), index)
        f = _strict(scope, item, path, _DESCRIPTOR_KEYS)
        descriptor_key = _text(scope, f, "key", required=True)
        value = _text(scope, f, "value")
        composite = f"{descriptor_key}_{value}" if value else descriptor_key
        if descriptor_key and composite in seen:
            scope.error(path, f"duplicate descriptor {composite!r} at this level")
        seen.add(composite)
        rate_limit = None
        if f.get("rate_limit") is not None:
            rate_limit = _rate_limit(scope, f.get("rate_limit"), f.path("rate_limit"))
        share = get_bool(scope, f, "share_threshold")
        if share and "*" not in value:
            scope.error(
                f.path("share_threshold"),
                "share_threshold can only be used with wildcard values (containing '*'), "
                f"but found key {composite!r}",
            )
        metadata = f.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            scope.error(f.path("metadata"), f"expected a mapping, got {describe(metadata)}")
            metadata = None
        result.append(
            RateLimitDescriptor(
                descriptor_key,
                value,
                rate_limit,
                get_bool(scope, f, "shadow_mode"),
                get_bool(scope, f, "detailed_metric"),
                _descriptors(scope, f, "descriptors"),
                quota_mode=get_bool(scope, f, "quota_mode"),
                value_to_metric=get_bool(scope, f, "value_to_metric"),
                share_threshold=share,
                metadata={str(k): v for k, v in (metadata or {}).items()},
            )
        )
    return tuple(result)


def _rate_limit(scope: Scope, value: Any, path: Path_) -> RateLimitPolicy:
    f = _strict(scope, value, path, _RATE_LIMIT_KEYS)
    unlimited = get_bool(scope, f, "unlimited")
    unit = _text(scope, f, "unit").lower()
    if unlimited:
        # As ratelimit: a valid unit is an error, anything else (none, "unknown", a typo) is
        # ignored, because an unlimited rule never opens a window.
        if unit in UNITS:
            scope.error(f.path("unit"), "should not specify rate limit unit when unlimited")
        unit = ""
    elif unit not in UNITS:
        scope.error(
            f.path("unit"),
            f"invalid rate limit unit {unit!r} (expected {', '.join(UNITS)})"
            if unit
            else f"missing (expected {', '.join(UNITS)})",
        )
    requests = get_int(scope, f, "requests_per_unit")
    if requests > _MAX_UINT32:
        scope.error(f.path("requests_per_unit"), f"must be at most {_MAX_UINT32}")
    name = _text(scope, f, "name")
    replaces: list[str] = []
    for index, item in enumerate(get_list(scope, f, "replaces")):
        entry = _strict(scope, item, (*f.path("replaces"), index), ("name",))
        replaced = _text(scope, entry, "name", required=True)
        if replaced and replaced == name:
            scope.error(entry.path("name"), "a rate limit cannot replace itself")
        replaces.append(replaced)
    return RateLimitPolicy(unit, requests, unlimited, name, tuple(replaces))


def _text(scope: Scope, f: Fields, key: str, *, required: bool = False) -> str:
    """A text field: a string, or any other scalar but a float as its source text."""
    value = f.get(key)
    if isinstance(value, bool | int | datetime.date):
        # ratelimit decodes YAML into string fields, which keeps the scalar as written
        value = scope.doc.texts.get(f.path(key), str(value))
    if value is None:
        if required:
            scope.error(f.path(key), "missing")
        return ""
    if not isinstance(value, str):
        scope.error(f.path(key), f"expected a string, got {describe(value)}")
        return ""
    text: str = value
    if required and not text:
        scope.error(f.path(key), "must not be empty")
    return text


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
