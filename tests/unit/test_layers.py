"""Imports point down the layers, adapters import only the contract, and nothing imports in a
circle. The layer order is written once, here; CONTRIBUTING.md explains it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mixer_process import ROOT

# Top to bottom. A unit (a module under mixer/ or a package, a module under adapters/) may import
# units of its own layer or of layers below it, never above. Units of one layer that are listed
# in one tuple with a leading "!" may not import each other either (peers).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("mixer.__main__", "mixer.cli", "mixer.client", "mixer.rulestest"),
    ("mixer.server", "mixer.settings"),
    ("mixer.api",),
    ("mixer.runtime",),
    ("mixer.config",),
    ("!", "mixer.expr", "adapters"),
    ("mixer.attributes",),
    (
        "mixer.errors",
        "mixer.codes",
        "mixer.templates",
        "mixer.telemetry",
        "mixer.series",
        "mixer.redact",
        "mixer",
    ),
    ("mixer.v1", "mixer.envoy"),
)
GENERATED = ("mixer/v1/", "mixer/envoy/")
# What every adapter may import from the adapters package: the contract and the shared helpers.
SHARED = ("adapters.base", "adapters.toolkit")


def unit_of(module: str) -> str | None:
    """The layered unit a dotted module name belongs to (None: not ours)."""
    parts = module.split(".")
    if parts[0] == "adapters":
        return ".".join(parts[:2])
    if parts[0] == "mixer":
        return ".".join(parts[:2])
    return None


def layer_of(unit: str) -> tuple[int, bool]:
    """(layer index, whether the layer's units are peers that may not import each other)."""
    for index, layer in enumerate(LAYERS):
        names = [n for n in layer if n != "!"]
        if unit in names or any(unit.startswith(n + ".") for n in names if n == "adapters"):
            return index, layer[0] == "!"
    raise AssertionError(f"{unit} is in no layer: add it to LAYERS")


def peer_group(unit: str) -> str:
    return "adapters" if unit.startswith("adapters") else unit


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    name = ".".join(rel.parts)
    return name.removesuffix(".__init__")


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = node.module or ""
            if node.level:
                target = f"{base}.{target}" if target else base
            yield node.lineno, target
            for alias in node.names:  # `from mixer import cli` imports mixer.cli
                yield node.lineno, f"{target}.{alias.name}"


def violations(root: Path) -> list[str]:
    """Every import in `root`'s mixer/ and adapters/ that breaks the layer rules."""
    found: dict[tuple[str, int], str] = {}
    known = _known_units(root)
    for path in sorted([*root.glob("mixer/**/*.py"), *root.glob("adapters/**/*.py")]):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(GENERATED):
            continue
        module = module_name(path, root)
        source = unit_of(module)
        assert source is not None
        source_layer, _ = layer_of(source)
        for line, target_module in imports(path, module):
            target = unit_of(target_module)
            if target is None or target == source:
                continue
            if target_module.startswith("mixer.") and target not in known:
                continue  # `from mixer.x import name`: the name is not a module
            if (
                source.startswith("adapters.")
                and target.startswith("adapters")
                and target not in SHARED
            ):
                found.setdefault((rel, line), f"adapter imports another adapter ({target})")
                continue
            target_layer, peers = layer_of(target)
            if target_layer < source_layer:
                found.setdefault((rel, line), f"{source} imports {target}, a layer above it")
            elif (
                target_layer == source_layer and peers and peer_group(target) != peer_group(source)
            ):
                found.setdefault((rel, line), f"{source} imports its peer {target}")
    return [f"{rel}:{line}: {why}" for (rel, line), why in sorted(found.items())]


def _known_units(root: Path) -> set[str]:
    units = {"mixer"}
    for path in root.glob("mixer/*"):
        if path.name == "__init__.py":
            continue
        if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()):
            units.add(f"mixer.{path.stem if path.suffix == '.py' else path.name}")
    return units


def test_every_import_points_down_the_layers() -> None:
    assert violations(ROOT) == []


def test_every_unit_has_a_layer() -> None:
    for unit in sorted(_known_units(ROOT)):
        layer_of(unit)


@pytest.mark.parametrize(
    ("path", "line", "complaint"),
    [
        ("mixer/runtime/extra.py", "from mixer.server import app", "a layer above it"),
        ("mixer/api/extra.py", "import mixer.server.tls", "a layer above it"),
        ("mixer/expr/extra.py", "from adapters.base import Instance", "its peer adapters"),
        ("adapters/extra.py", "from adapters import memquota", "another adapter"),
        ("adapters/extra.py", "from mixer.config import model", "a layer above it"),
        ("adapters/toolkit/extra.py", "from adapters.memquota import INFO", "another adapter"),
        ("mixer/attributes/extra.py", "from ..expr import compile", "a layer above it"),
    ],
)
def test_an_upward_import_is_caught(tmp_path: Path, path: str, line: str, complaint: str) -> None:
    # The real tree, file by file, plus the offending module.
    for top in ("mixer", "adapters"):
        for source in (ROOT / top).rglob("*.py"):
            target = tmp_path / source.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    (tmp_path / path).write_text(f"{line}\n")
    found = violations(tmp_path)
    assert len(found) == 1 and complaint in found[0], found
