"""Reloads that redo only what changed (`mixer.config.cache`), and give what a cold load gives.

Parses and compiles are counted at the functions that do the work (`source.parse_documents`,
`validate.compile_expression`), not by the cache's own counters, so a cache that stops reusing
anything fails these tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mixer.config import ConfigReport, check_config, source, validate
from mixer.config.cache import ConfigCache
from tests.unit.config_helpers import TEST_ADAPTERS

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((Path(__file__).parent / "rules_bad").glob("*.yaml"))

_COMMON = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny}
spec: {compiledAdapter: denier, params: {status: {code: 7}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing}
spec: {compiledTemplate: checknothing}
"""


def _rules(file: int, count: int, changed: int | None = None) -> str:
    docs = []
    for n in range(count):
        path = f"/f{file}/r{n}" + ("/changed" if n == changed else "")
        docs.append(
            "apiVersion: config.istio.io/v1alpha2\n"
            "kind: rule\n"
            f"metadata: {{name: f{file}r{n}}}\n"
            "spec:\n"
            f'  match: request.path == "{path}" && source.namespace == "ns{file}"\n'
            "  actions: [{handler: deny, instances: [nothing]}]\n"
        )
    return "---\n".join(docs)


def _config(directory: Path, files: int = 10, rules: int = 5) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "common.yaml").write_text(_COMMON)
    for f in range(files):
        (directory / f"rules{f}.yaml").write_text(_rules(f, rules))
    return directory


class _Counts:
    def __init__(self) -> None:
        self.parsed: list[str] = []
        self.compiled: list[str] = []


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Counts]:
    found = _Counts()
    parse, compile_ = source.parse_documents, validate.compile_expression

    def counting_parse(text: str, shown_as: str, max_nodes: int) -> Any:
        found.parsed.append(Path(shown_as).name)
        return parse(text, shown_as, max_nodes)

    def counting_compile(text: str, **kwargs: Any) -> Any:
        found.compiled.append(text)
        return compile_(text, **kwargs)

    monkeypatch.setattr(source, "parse_documents", counting_parse)
    monkeypatch.setattr(validate, "compile_expression", counting_compile)
    yield found


def _same(a: ConfigReport, b: ConfigReport) -> None:
    """Equal problems, notes and snapshots (programs compared by text, dialect and type)."""
    assert [str(p) for p in a.problems] == [str(p) for p in b.problems]
    assert a.notes == b.notes
    assert repr(a.snapshot) == repr(b.snapshot)


def test_touching_one_file_reparses_it_and_compiles_only_its_new_expressions(
    tmp_path: Path, counts: _Counts
) -> None:
    config = _config(tmp_path / "config")
    cache = ConfigCache()
    first = check_config(config, TEST_ADAPTERS, cache=cache)
    assert first.snapshot is not None
    assert {"common.yaml", *(f"rules{f}.yaml" for f in range(10))} <= set(counts.parsed)
    assert len(counts.compiled) > 50
    counts.parsed.clear()
    counts.compiled.clear()

    (config / "rules3.yaml").write_text(_rules(3, 5, changed=2))
    warm = check_config(config, TEST_ADAPTERS, cache=cache)

    assert counts.parsed == ["rules3.yaml"]
    # The one edited rule's match; the check_config probe ("true") is not the config's.
    assert [t for t in counts.compiled if t != "true"] == [
        'request.path == "/f3/r2/changed" && source.namespace == "ns3"'
    ]
    _same(warm, check_config(config, TEST_ADAPTERS))


def test_an_unchanged_config_reloads_without_parsing_or_compiling(
    tmp_path: Path, counts: _Counts
) -> None:
    config = _config(tmp_path / "config")
    cache = ConfigCache()
    check_config(config, TEST_ADAPTERS, cache=cache)
    counts.parsed.clear()
    counts.compiled.clear()
    for path in config.iterdir():
        os.utime(path)  # touched: a new mtime, the same content
    warm = check_config(config, TEST_ADAPTERS, cache=cache)
    assert counts.parsed == []
    assert [t for t in counts.compiled if t != "true"] == []
    _same(warm, check_config(config, TEST_ADAPTERS))


def test_an_edit_keeping_size_and_mtime_is_seen(tmp_path: Path) -> None:
    config = _config(tmp_path / "config")
    cache = ConfigCache()
    assert check_config(config, TEST_ADAPTERS, cache=cache).snapshot is not None
    path = config / "rules0.yaml"
    before = path.stat()
    text = path.read_text()
    edited = text.replace("kind: rule", "kind: rulz", 1)
    assert len(edited) == len(text)
    path.write_text(edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    warm = check_config(config, TEST_ADAPTERS, cache=cache)
    assert warm.snapshot is None
    assert any("unknown kind 'rulz'" in str(p) for p in warm.problems)
    _same(warm, check_config(config, TEST_ADAPTERS))


def _sources() -> list[tuple[str, list[Path]]]:
    cases = [(f"bad/{fixture.stem}", [fixture]) for fixture in BAD]
    cases.append(("good/rules", sorted((ROOT / "rules").glob("*.yaml"))))
    return cases


def test_warm_loads_report_exactly_what_cold_loads_do(tmp_path: Path) -> None:
    """One cache through every fixture in turn (each replacing the last in one directory), each
    loaded twice: problems, notes and snapshots equal a cold load's every time."""
    config = tmp_path / "config"
    cache = ConfigCache()
    compared = 0
    for name, files in _sources() + _sources()[::-1]:
        shutil.rmtree(config, ignore_errors=True)
        config.mkdir()
        for file in files:
            shutil.copy(file, config / file.name)
        cold = check_config(config, TEST_ADAPTERS)
        for _ in range(2):
            warm = check_config(config, TEST_ADAPTERS, cache=cache)
            try:
                _same(warm, cold)
            except AssertionError as err:
                raise AssertionError(f"{name}: {err}") from None
            compared += 1
    assert compared >= 4 * len(BAD)


def test_the_cache_holds_only_the_current_config(tmp_path: Path) -> None:
    config = _config(tmp_path / "config", files=10, rules=5)
    cache = ConfigCache()
    check_config(config, TEST_ADAPTERS, cache=cache)
    full = len(cache)
    for f in range(1, 10):
        (config / f"rules{f}.yaml").unlink()
    check_config(config, TEST_ADAPTERS, cache=cache)
    assert len(cache) < full / 5
    # What a cold load of the smaller config would leave.
    fresh = ConfigCache()
    check_config(config, TEST_ADAPTERS, cache=fresh)
    assert len(cache) == len(fresh)


def test_the_node_limit_applies_to_cached_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source, "_max_nodes", source._max_nodes)  # restored after the test
    config = _config(tmp_path / "config", files=1, rules=3)
    cache = ConfigCache()
    assert check_config(config, TEST_ADAPTERS, cache=cache).snapshot is not None
    source.set_max_nodes(10)
    warm = check_config(config, TEST_ADAPTERS, cache=cache)
    assert warm.snapshot is None
    assert any("--max-config-nodes" in str(p) for p in warm.problems)
    _same(warm, check_config(config, TEST_ADAPTERS))
