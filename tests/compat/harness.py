"""Main-process side of the Envoy compatibility harness: the isolated venv and its subprocesses.

Envoy's own generated code (PyPI ``xds-protos``) lives ONLY in an isolated venv, never in the
project venv: it installs top-level ``google/`` and ``opentelemetry/proto`` modules that shadow
other packages' copies. This module creates that venv on first use and runs the scripts beside it
(``envoy_side.py``, ``envoy_client.py``) with its interpreter.

The venv path is ``$MIXER_COMPAT_VENV`` or ``<repo>/.compat-venv``. Other test suites use it as

    from tests.compat.harness import run_envoy_client
    answer = run_envoy_client("127.0.0.1:9091", "check", {"attributes": {...}})
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# Exported from uv.lock by ``./dev lock`` (the ``compat`` group in pyproject.toml): every
# distribution pinned with its hashes, so a new Envoy release (new fields, enum values) or a new
# grpcio changes the tests only on purpose.
REQUIREMENTS = ROOT / "requirements" / "compat.txt"
# Holds REQUIREMENTS' text once installed and probed: a half-built or outdated venv is
# (re)installed.
_MARKER = ".mixer-compat-ok"
_PROBE = (
    "import grpc, envoy.service.auth.v3.external_auth_pb2_grpc, "
    "envoy.service.accesslog.v3.als_pb2_grpc, envoy.service.ratelimit.v3.rls_pb2_grpc"
)
_INSTALL_TIMEOUT_S = 600.0
_RUN_TIMEOUT_S = 120.0


class CompatEnvError(RuntimeError):
    """The isolated venv could not be created or a script in it failed."""


def venv_dir() -> Path:
    """Where the isolated venv lives (``$MIXER_COMPAT_VENV`` overrides the default)."""
    return Path(os.environ.get("MIXER_COMPAT_VENV") or ROOT / ".compat-venv")


def _clean_env() -> dict[str, str]:
    # The child must see only its own site-packages, never the project's.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(args: list[str], timeout: float, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            args,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_clean_env(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompatEnvError(f"{' '.join(args)}: {exc}") from exc
    if done.returncode != 0:
        raise CompatEnvError(
            f"{' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
        )
    return done.stdout


def ensure_compat_venv() -> Path:
    """The isolated venv's interpreter; builds the venv from `REQUIREMENTS` if needed.

    Raises `CompatEnvError` with the installer's output when it cannot be built.
    """
    root = venv_dir()
    python = root / "bin" / "python"
    marker = root / _MARKER
    wanted = REQUIREMENTS.read_text()
    if python.is_file() and marker.is_file() and marker.read_text() == wanted:
        return python
    if root.exists() and not (root / "pyvenv.cfg").is_file():
        raise CompatEnvError(f"{root} exists but is not a venv: remove it or set MIXER_COMPAT_VENV")
    if not python.is_file():
        _run([sys.executable, "-m", "venv", str(root)], _INSTALL_TIMEOUT_S)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "--require-hashes", "-r", str(REQUIREMENTS)], _INSTALL_TIMEOUT_S)
    _run([str(python), "-c", _PROBE], _RUN_TIMEOUT_S)
    marker.write_text(wanted)
    return python


def run_envoy_side(op: str, payload: object = None) -> Any:
    """Run ``envoy_side.py OP`` in the isolated venv and return its JSON answer."""
    python = ensure_compat_venv()
    stdin = None if payload is None else json.dumps(payload)
    out = _run([str(python), str(HERE / "envoy_side.py"), op], _RUN_TIMEOUT_S, stdin)
    return json.loads(out)


def run_envoy_client(
    address: str,
    kind: str,
    request: object,
    *,
    timeout_s: float = 5.0,
    metadata: dict[str, str] | None = None,
    hold_s: float = 0.0,
) -> Any:
    """Call the server at `address` with Envoy's own stubs; see ``envoy_client.py`` for `kind`
    (``check``, ``als``, ``rls``) and the shape of `request` and of the JSON answer."""
    python = ensure_compat_venv()
    args = [str(python), str(HERE / "envoy_client.py"), "--timeout", str(timeout_s)]
    args += ["--hold", str(hold_s)]
    for key, value in (metadata or {}).items():
        args += ["--metadata", f"{key}={value}"]
    args += [address, kind, "-"]
    # Generous outer bound: interpreter start-up plus every call's own deadline.
    calls = len(request) if isinstance(request, list) else 1
    budget = _RUN_TIMEOUT_S + calls * (timeout_s + hold_s)
    return json.loads(_run(args, budget, json.dumps(request)))
