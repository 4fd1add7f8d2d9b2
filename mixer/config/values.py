"""Attribute values written by people (``--attr`` text, YAML, JSON) typed by a vocabulary.

Shared by ``mixer check --attr``, ``mixer test`` and ``/debug/explain``: one spelling of a value
means the same thing everywhere.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Mapping

from adapters.base import ParamError
from adapters.toolkit.params import duration_param
from mixer.attributes.bag import Bag, StringMap, Value


def typed_value(name: str, value: object, vocabulary: Mapping[str, str]) -> object:
    """`value` (text, or a YAML/JSON scalar or mapping) as the attribute's type from the
    vocabulary, inferred when the name is unknown; ValueError says what is wrong with it."""
    kind = vocabulary.get(name)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address | datetime.timedelta):
        return value  # typed already (`mixer check --attr` parsed it)
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, bool):
        value = "true" if value else "false"
    if isinstance(value, dict) and kind in ("STRING_MAP", None):
        return {str(k): str(v) for k, v in value.items()}
    if kind in ("INT64", "DOUBLE") and isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        if kind is None and isinstance(value, int | float):
            return value
        raise ValueError(f"{kind or 'attribute'} {name}: unexpected value {value!r}")
    text = value
    try:
        if kind == "STRING_MAP":
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            return {str(k): str(v) for k, v in data.items()}
        if kind == "INT64":
            return int(text)
        if kind == "DOUBLE":
            return float(text)
        if kind == "BOOL":
            if text.lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            return text.lower() == "true"
        if kind == "IP_ADDRESS":
            return ipaddress.ip_address(text)
        if kind == "TIMESTAMP":
            ts = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            return ts if ts.tzinfo else ts.replace(tzinfo=datetime.UTC)
        if kind == "DURATION":
            return duration_param(text, name)
    except (ValueError, ParamError) as exc:
        raise ValueError(f"{name}: {kind} value {text!r} is invalid: {exc}") from None
    if kind is None and text.lstrip("-").isdigit():
        return int(text)
    return text


def bag_from_data(attributes: Mapping[str, object], vocabulary: Mapping[str, str]) -> Bag:
    """A bag from name -> value data, each typed as `typed_value` types it (ValueError)."""
    data: dict[str, Value] = {}
    for name, raw in attributes.items():
        data[str(name)] = _bag_value(typed_value(str(name), raw, vocabulary))
    return Bag(data)


def _bag_value(value: object) -> Value:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value.packed
    if isinstance(value, dict):
        return StringMap(value)
    assert isinstance(value, str | int | float | bytes | datetime.datetime | datetime.timedelta)
    return value
