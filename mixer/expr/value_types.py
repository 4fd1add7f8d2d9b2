"""Mixer's value type names: what an attribute manifest may declare, and what an expression's
result may be."""

from __future__ import annotations

from typing import Final

ATTRIBUTE_TYPES: Final = frozenset(
    {
        "STRING",
        "INT64",
        "DOUBLE",
        "BOOL",
        "TIMESTAMP",
        "DURATION",
        "IP_ADDRESS",
        "EMAIL_ADDRESS",
        "URI",
        "DNS_NAME",
        "STRING_MAP",
    }
)
"""The ValueType names of Istio's attribute manifests (``valueType:``)."""

VALUE_TYPES: Final = ATTRIBUTE_TYPES | {"DYNAMIC"}
"""The types an expression can have: an attribute type, or DYNAMIC when only known at run time."""
