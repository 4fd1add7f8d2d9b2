"""What a reload can reuse from the last load: parsed files and compiled expressions.

A `ConfigCache` is handed to `mixer.config.check_config` / `load_config` by whoever loads the
same directory again and again (the reloader). With it, a load re-parses only the files whose
content changed and compiles only the expressions it has not compiled before, and its result
(snapshot, problems, notes) is exactly what a load without it gives.

Contracts:

- **Never stale.** A file's parse (its documents read into drafts, with its problems and
  notes) is reused only when its content hash (SHA-256 of its bytes), the name it is shown as,
  and the parse's context (the node limit in force, ``--max-config-nodes``; the adapters; the
  default namespace) equal those it was parsed with; size and mtime are recorded but never
  trusted alone. A program is reused only for the same
  (text, dialect, vocabulary, CEL libraries).
- **Bounded.** After every load (`sweep`), files that load did not read and programs it did not
  ask for are dropped: the cache holds at most what the current config holds.
- **Not thread-safe.** One load at a time uses a cache (the reloader runs one load at a time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from mixer.expr import CompileError, Program

T = TypeVar("T")


@dataclass(frozen=True)
class _FileEntry:
    size: int
    mtime_ns: int
    digest: bytes
    shown_as: str
    context: tuple[object, ...]
    parsed: object


VocabularyKey = frozenset[tuple[str, str]]


class ConfigCache:
    """Parsed files by path and compiled programs by (text, dialect, vocabulary, libraries)."""

    def __init__(self) -> None:
        self._files: dict[str, _FileEntry] = {}
        self._programs: dict[
            tuple[str, str, VocabularyKey, tuple[str, ...]], Program | CompileError
        ] = {}
        self._files_seen: set[str] = set()
        self._programs_seen: set[tuple[str, str, VocabularyKey, tuple[str, ...]]] = set()
        self._vocabularies: dict[int, tuple[Mapping[str, str], VocabularyKey]] = {}
        self.parses = 0
        """Files parsed (not reused) since this cache was made."""
        self.compiles = 0
        """Expressions compiled (not reused) since this cache was made."""

    def file(
        self,
        file: Path,
        shown_as: str,
        context: tuple[object, ...],
        parse: Callable[[str], T],
    ) -> T | None:
        """`parse(text)` of `file`, from the cache when its bytes hash the same and `shown_as`
        and `context` (whatever else the parse depends on) are equal, else parsed (then
        cached). None when the file cannot be read or decoded: the caller reads it itself, so
        that the error is reported exactly as without a cache. The caller must not change what
        `parse` returned: it is handed out again."""
        key = str(file)
        self._files_seen.add(key)
        try:
            stat = file.stat()
            raw = file.read_bytes()
        except OSError:
            self._files.pop(key, None)
            return None
        digest = hashlib.sha256(raw).digest()
        entry = self._files.get(key)
        if (
            entry is not None
            and entry.digest == digest
            and entry.shown_as == shown_as
            and entry.context == context
        ):
            return cast(T, entry.parsed)
        try:
            # As `Path.read_text` gives it (universal newlines), so that a parse is the same.
            text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        except UnicodeDecodeError:
            self._files.pop(key, None)
            return None
        self.parses += 1
        parsed = parse(text)
        self._files[key] = _FileEntry(len(raw), stat.st_mtime_ns, digest, shown_as, context, parsed)
        return parsed

    def vocabulary_key(self, vocabulary: Mapping[str, str]) -> VocabularyKey:
        """A hashable key for `vocabulary` (remembered per mapping object for the load)."""
        known = self._vocabularies.get(id(vocabulary))
        if known is not None and known[0] is vocabulary:
            return known[1]
        key = frozenset(vocabulary.items())
        self._vocabularies[id(vocabulary)] = (vocabulary, key)
        return key

    def program(
        self,
        text: str,
        dialect: str,
        vocabulary: Mapping[str, str],
        libraries: tuple[str, ...],
        compile_: Callable[[], Program],
    ) -> Program | CompileError:
        """The program (or the compile error) of `text`; `compile_` is called on a miss."""
        key = (text, dialect, self.vocabulary_key(vocabulary), libraries)
        self._programs_seen.add(key)
        result = self._programs.get(key)
        if result is None:
            self.compiles += 1
            try:
                result = compile_()
            except CompileError as err:
                result = err
            self._programs[key] = result
        return result

    def sweep(self) -> None:
        """End of a load: drop every file and program it did not use."""
        for key in self._files.keys() - self._files_seen:
            del self._files[key]
        for program in self._programs.keys() - self._programs_seen:
            del self._programs[program]
        self._files_seen.clear()
        self._programs_seen.clear()
        self._vocabularies.clear()

    def __len__(self) -> int:
        """Files plus programs held."""
        return len(self._files) + len(self._programs)
