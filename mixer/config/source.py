"""Reading config files: YAML documents with the line number of every key and list item.

Documents are composed first (`yaml.compose_all`) so that every error can name the line of the
offending key, then constructed with PyYAML's safe constructor. Duplicate keys, which PyYAML would
silently resolve to the last one, are recorded so the loader can reject them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mixer.config.problems import ConfigProblem, PathPart

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"

Path_ = tuple[PathPart, ...]

DEFAULT_MAX_NODES = 100_000
_max_nodes = DEFAULT_MAX_NODES


def set_max_nodes(limit: int) -> None:
    """Set the most nodes one document may hold once its aliases are expanded (the process's
    ``--max-config-nodes``). Everything after reading (validation, freezing, building) walks
    the expanded tree, so a few nested aliases would otherwise cost time and memory
    exponential in the file's size."""
    global _max_nodes
    _max_nodes = limit


def expanded_size(node: Node, limit: int) -> int:
    """The number of nodes under `node` with every alias expanded, counted in linear time;
    stops counting once past `limit` (the result is then larger than `limit`). Assumes no
    recursive alias (`_Walker` refuses those first)."""
    sizes: dict[int, int] = {}

    def size(n: Node) -> int:
        known = sizes.get(id(n))
        if known is not None:
            return known
        total = 1
        if isinstance(n, MappingNode):
            for key, value in n.value:
                total += size(key) + size(value)
                if total > limit:
                    break
        elif isinstance(n, SequenceNode):
            for item in n.value:
                total += size(item)
                if total > limit:
                    break
        sizes[id(n)] = total
        return total

    return size(node)


@dataclass(frozen=True)
class Document:
    """One YAML document of a config file, with line numbers for every path inside it."""

    path: str
    """The file, as shown in messages."""
    line: int
    """1-based line where the document's content starts."""
    data: Any
    lines: Mapping[Path_, int]
    duplicates: tuple[tuple[Path_, str, int], ...] = field(default=())
    """(path of the mapping, key, line) for every key written again in the same mapping."""
    texts: Mapping[Path_, str] = field(default_factory=dict)
    """The source text of every scalar that YAML typed as something other than a string (a
    number, boolean, date, null), by path: for formats that read such scalars as text."""

    def line_of(self, path: Sequence[PathPart]) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            line = self.lines.get(key)
            if line is not None:
                return line
            key = key[:-1]
        return self.line


TEST_FILE_SUFFIXES = ("_test.yaml", "_test.yml")
"""Names of rule test files (`mixer.rulestest`), which are not config."""


def config_files(directory: Path) -> Iterator[Path]:
    """Every ``*.yaml`` / ``*.yml`` file under `directory`, recursively, in sorted order.

    Hidden files and directories (``.git``, ``.github`` ...) are skipped: they are not config;
    nor are rule test files (``*_test.yaml``, read by ``mixer test``), which live next to rules.
    """
    found = [
        path
        for path in directory.rglob("*")
        if path.suffix in (".yaml", ".yml")
        and not path.name.endswith(TEST_FILE_SUFFIXES)
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    ]
    yield from sorted(found)


def max_nodes() -> int:
    """The node limit in force (`set_max_nodes`)."""
    return _max_nodes


def read_documents(file: Path, shown_as: str) -> tuple[list[Document], list[ConfigProblem]]:
    """All non-empty documents of `file`, and the problems that kept others from being read.

    A syntax error ends the file (the parser cannot resynchronise); documents before it are kept.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return [], [ConfigProblem(shown_as, 1, "", "", f"cannot read file: {err}")]
    return parse_documents(text, shown_as, _max_nodes)


def parse_documents(
    text: str, shown_as: str, max_nodes: int
) -> tuple[list[Document], list[ConfigProblem]]:
    """`read_documents` of a file's text, with at most `max_nodes` nodes per expanded document."""
    documents: list[Document] = []
    problems: list[ConfigProblem] = []
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            if node is None or (isinstance(node, ScalarNode) and node.tag == _NULL_TAG):
                continue
            start = node.start_mark.line + 1
            walker = _Walker()
            if not walker.walk(node, ()):
                problems.append(
                    ConfigProblem(shown_as, start, "", "", "invalid YAML: recursive alias")
                )
                continue
            if expanded_size(node, max_nodes) > max_nodes:
                problems.append(
                    ConfigProblem(
                        shown_as,
                        start,
                        "",
                        "",
                        f"invalid YAML: the document expands (aliases included) to more than "
                        f"{max_nodes} nodes (--max-config-nodes)",
                    )
                )
                continue
            try:
                data = SafeConstructor().construct_document(node)
            except yaml.MarkedYAMLError as err:
                problems.append(_yaml_problem(shown_as, err))
                continue
            except (ValueError, KeyError, AttributeError, IndexError, TypeError) as err:
                # PyYAML's constructors raise plain errors for values such as `2001-02-30`
                # or `!!int abc`; they are still the file's fault.
                problems.append(
                    ConfigProblem(shown_as, start, "", "", f"invalid YAML value: {err}")
                )
                continue
            documents.append(
                Document(
                    shown_as, start, data, walker.lines, tuple(walker.duplicates), walker.texts
                )
            )
    except yaml.MarkedYAMLError as err:
        problems.append(_yaml_problem(shown_as, err))
    except yaml.YAMLError as err:
        problems.append(ConfigProblem(shown_as, 1, "", "", f"invalid YAML: {err}"))
    return documents, problems


def _yaml_problem(shown_as: str, err: yaml.MarkedYAMLError) -> ConfigProblem:
    mark = err.problem_mark or err.context_mark
    line = mark.line + 1 if mark is not None else 1
    what = err.problem or err.context or "syntax error"
    if err.problem and err.context:
        # e.g. "found unexpected end of stream (while scanning a quoted scalar at line 6)"
        where = f" at line {err.context_mark.line + 1}" if err.context_mark is not None else ""
        what = f"{err.problem} ({err.context}{where})"
    return ConfigProblem(shown_as, line, "", "", f"invalid YAML: {what}")


class _Walker:
    """Records the line of every mapping key and sequence item, and duplicate keys."""

    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}
        self.duplicates: list[tuple[Path_, str, int]] = []
        self.texts: dict[Path_, str] = {}
        self._seen: set[int] = set()
        self._ancestors: set[int] = set()

    def walk(self, node: Node, path: Path_) -> bool:
        """False if the node contains itself (an alias to an ancestor)."""
        if id(node) in self._ancestors:
            return False
        if id(node) in self._seen:
            # An alias to a node already walked: its lines are recorded under the first path.
            # Not descending again keeps this linear even for "billion laughs" documents.
            return True
        self._seen.add(id(node))
        self._ancestors.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, ScalarNode) and node.tag != _STR_TAG:
                self.texts[path] = node.value
            if isinstance(node, SequenceNode):
                for index, item in enumerate(node.value):
                    self.lines[(*path, index)] = item.start_mark.line + 1
                    if not self.walk(item, (*path, index)):
                        return False
            return True
        finally:
            self._ancestors.discard(id(node))

    def _mapping(self, node: MappingNode, path: Path_) -> bool:
        keys: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                if not self.walk(value_node, path):
                    return False
                continue
            key = key_node.value if isinstance(key_node, ScalarNode) else str(key_node)
            # A complex key (`? {...}`) can hold an alias to an ancestor too: the cycle must be
            # found here, before anything counts or constructs the document.
            if not isinstance(key_node, ScalarNode) and not self.walk(key_node, (*path, key)):
                return False
            if key in keys:
                self.duplicates.append((path, key, key_node.start_mark.line + 1))
            keys.add(key)
            self.lines.setdefault((*path, key), key_node.start_mark.line + 1)
            if not self.walk(value_node, (*path, key)):
                return False
        return True
