"""Regenerate the Python code for every .proto under protos/ (``--check`` fails on drift).

Output goes beside the package that the proto path names: ``protos/mixer/v1/x.proto`` becomes
``mixer/v1/x_pb2.py`` (+ ``.pyi`` and ``_pb2_grpc.py``). Run from anywhere:

    python protos/generate.py            # rewrite the generated files
    python protos/generate.py --check    # exit 1 when the committed files differ

The check compares the files byte for byte, headers included: the generators (grpcio-tools and
its protoc, mypy-protobuf) are pinned by the lock (``uv.lock``, ``requirements/dev.txt``), so a
fresh ``./dev setup`` regenerates exactly what is committed. When the only differences are the
version lines the generators stamp (``GRPC_GENERATED_VERSION``, ``Protobuf Python Version``,
mypy-protobuf's), the check says the installed generator is not the locked one rather than that
``protos/`` changed.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def _include_dirs() -> list[str]:
    grpc_tools_protos = importlib.resources.files("grpc_tools") / "_proto"
    dirs = [str(PROTOS), str(grpc_tools_protos)]
    for entry in sys.path:
        candidate = Path(entry) / "google" / "rpc" / "status.proto"
        if candidate.is_file():
            dirs.append(str(Path(entry)))
            break
    return dirs


def _generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    bindir = Path(sys.executable).parent
    args = ["protoc", *(f"-I{d}" for d in _include_dirs())]
    args += [f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}"]
    args += [f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}"]
    args += [f"--python_out={out}", f"--mypy_out={out}", f"--grpc_python_out={out}"]
    args += [f"--mypy_grpc_out={out}", *sources]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for proto in sources:
        package_dir = out / Path(proto).parent
        while package_dir != out:
            (package_dir / "__init__.py").touch()
            package_dir = package_dir.parent


def _generated_files(root: Path) -> set[Path]:
    found: set[Path] = set()
    for proto in PROTOS.rglob("*.proto"):
        rel = proto.relative_to(PROTOS)
        stem = rel.with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            path = root / f"{stem}{suffix}"
            if path.exists():
                found.add(path.relative_to(root))
    return found


# Lines in which the generators stamp their own version.
_VERSION_LINE = re.compile(
    rb"^(GRPC_GENERATED_VERSION = .*|# Protobuf Python Version: .*|"
    rb"    \d+,|.*mypy-protobuf \d.*)$",
    re.M,
)


def _only_versions_differ(a: Path, b: Path) -> bool:
    return _VERSION_LINE.sub(b"", a.read_bytes()) == _VERSION_LINE.sub(b"", b.read_bytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when generated code drifts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        _generate(out)
        fresh = _generated_files(out)
        if args.check:
            drift = sorted(
                str(rel)
                for rel in fresh
                if not (ROOT / rel).exists()
                or not filecmp.cmp(out / rel, ROOT / rel, shallow=False)
            )
            if drift and all(
                (ROOT / rel).exists() and _only_versions_differ(out / rel, ROOT / rel)
                for rel in drift
            ):
                print(
                    "the installed protobuf generators are not the locked ones (only their "
                    "version stamps differ); install from the lock: ./dev setup"
                )
                for rel in drift:
                    print(f"  {rel}")
                return 1
            if drift:
                print("generated protobuf code is out of date; run: python protos/generate.py")
                for rel in drift:
                    print(f"  {rel}")
                return 1
            print(f"generated protobuf code is up to date ({len(fresh)} files)")
            return 0
        for rel in sorted(fresh):
            target = ROOT / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / rel, target)
            init = target.parent / "__init__.py"
            if not init.exists():
                init.touch()
        print(f"wrote {len(fresh)} files")
        return 0


if __name__ == "__main__":
    sys.exit(main())
