"""google.rpc.Code: the status numbers that adapters, the runtime and the servers share.

Plain ints (not an enum): handlers return them and the hot paths compare them per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

OK: Final = 0
CANCELLED: Final = 1
UNKNOWN: Final = 2
INVALID_ARGUMENT: Final = 3
DEADLINE_EXCEEDED: Final = 4
NOT_FOUND: Final = 5
ALREADY_EXISTS: Final = 6
PERMISSION_DENIED: Final = 7
RESOURCE_EXHAUSTED: Final = 8
FAILED_PRECONDITION: Final = 9
ABORTED: Final = 10
OUT_OF_RANGE: Final = 11
UNIMPLEMENTED: Final = 12
INTERNAL: Final = 13
UNAVAILABLE: Final = 14
DATA_LOSS: Final = 15
UNAUTHENTICATED: Final = 16

NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        value: name
        for name, value in globals().items()
        if name.isupper() and isinstance(value, int) and not name.startswith("_")
    }
)
"""Code number -> name (``8`` -> ``RESOURCE_EXHAUSTED``), as gRPC and Mixer's logs spell it."""


def name(code: int) -> str:
    """The code's name, or its number as text for a code gRPC does not define."""
    return NAMES.get(code, str(code))
