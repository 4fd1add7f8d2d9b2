"""The CEL libraries a compiler can be given, by name, and the default set.

Every library here is enabled by default: each is pure computation on values the expression
already holds, bounded like the core (no string or list beyond `_cel_runtime.MAX_VALUE_SIZE`,
comprehensions within the iteration budget), with no I/O, clock or randomness, so none is
unsafe in a policy server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mixer.expr import (
    _cel_ext_encoders,
    _cel_ext_macros,
    _cel_ext_math,
    _cel_ext_network,
    _cel_ext_optionals,
    _cel_ext_strings,
)
from mixer.expr._cel_library import Library
from mixer.expr._errors import CompileError

LIBRARIES: Mapping[str, Library] = {
    lib.name: lib
    for lib in (
        _cel_ext_strings.LIBRARY,
        _cel_ext_math.LIBRARY,
        _cel_ext_encoders.LIBRARY,
        _cel_ext_macros.BINDINGS,
        _cel_ext_macros.TWO_VAR_COMPREHENSIONS,
        _cel_ext_macros.BLOCK,
        _cel_ext_optionals.LIBRARY,
        _cel_ext_network.LIBRARY,
    )
}
DEFAULT_LIBRARIES: tuple[str, ...] = tuple(LIBRARIES)


def resolve(names: Iterable[str] | None) -> tuple[Library, ...]:
    """The libraries called `names` (None: the default set); an unknown name is a CompileError."""
    chosen = DEFAULT_LIBRARIES if names is None else tuple(names)
    unknown = sorted(set(chosen) - set(LIBRARIES))
    if unknown:
        raise CompileError(f"unknown CEL libraries {unknown} (known: {sorted(LIBRARIES)})")
    return tuple(LIBRARIES[name] for name in chosen)


def library_of(name: str) -> str | None:
    """The name of the library that provides function or macro `name`, if one does."""
    for lib in LIBRARIES.values():
        if lib.provides(name):
            return lib.name
    return None
