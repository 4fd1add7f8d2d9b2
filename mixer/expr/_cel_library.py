"""A CEL library: a named unit of functions, type names and macros a compiler may be given.

The core language (`_cel_runtime.FUNCTIONS`, the macros of `_cel_compiler`) is always there; each
extension library of cel-go (strings, math, encoders, optionals, ...) is one `Library`, so which
ones an expression may use is a choice made when compiling (`_cel_libraries.LIBRARIES`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Library:
    """One library.

    `functions` maps a function name to its implementation, which takes the receiver first
    (`'abc'.charAt(1)` calls ``charAt('abc', 1)``) and raises `_cel_runtime.CelError` on a bad
    argument; a qualified name (``"math.greatest"``) is called as written, with no receiver.
    `results` gives the CEL kind a function returns where it is fixed (type checking and result
    types); a function not listed there returns a dynamic value, whose Mixer ValueType
    `value_types` may still fix (`ip()` gives an IP_ADDRESS). `types` are the type names
    the library adds (``net.IP``); `macros` name the forms the compiler expands itself when the
    library is enabled (``"cel.bind"``, ``"optMap"``, the ``?.`` syntax as ``"?"``).
    """

    name: str
    summary: str
    functions: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    results: Mapping[str, str] = field(default_factory=dict)
    value_types: Mapping[str, str] = field(default_factory=dict)
    types: tuple[str, ...] = ()
    macros: frozenset[str] = frozenset()

    def provides(self, name: str) -> bool:
        """Whether `name` (a function, qualified function or macro name) comes from here."""
        return name in self.functions or name in self.macros
