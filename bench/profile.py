"""Where a server's time goes: py-spy samples of a running process, summarised.

`record` runs ``py-spy record --format raw`` (collapsed stacks) against a pid for a fixed time,
non-blocking (the target is not paused). `summarise` turns the stacks into the functions with
the most samples on top of the stack (self) and anywhere in it (inclusive), in % of samples.
py-spy is in the dev extra (installed by ``./dev bench``); without it profiling is skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# Inclusive time is listed for the project's own functions (the rest is the event loop's chain).
OURS = ("mixer/", "adapters/")
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy executable (next to this interpreter or on PATH), or None."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` into `out` (collapsed stacks); returns the process."""
    exe = py_spy()
    if exe is None:
        raise FileNotFoundError("py-spy is not installed (./dev setup installs it)")
    argv = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# Frames of this checkout are shown relative to it, wherever it is.
_ROOT = Path(__file__).resolve().parent.parent


def _frame_name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", f"{_ROOT}/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m['fn']} ({path})"


def summarise(collapsed: Path, top: int = 20) -> dict[str, Any]:
    """Shares of samples: top functions by self time, and our functions by inclusive time."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        count = int(m["count"])
        frames = [_frame_name(f) for f in m["stack"].split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}
    ours = Counter({n: c for n, c in inclusive.items() if n.split(" (", 1)[-1].startswith(OURS)})
    return {
        "samples": total,
        "self": [(n, c / total) for n, c in own.most_common(top)],
        "inclusive": [(n, c / total) for n, c in ours.most_common(top)],
    }


def format_summary(name: str, summary: dict[str, Any], top: int = 15) -> str:
    """A text block: the top self and inclusive functions of one profile."""
    lines = [f"profile of {name}: {summary['samples']} samples"]
    lines.append("  self time:")
    lines += [f"    {share:6.1%}  {fn}" for fn, share in summary["self"][:top]]
    lines.append("  inclusive time (mixer/ and adapters/ functions):")
    lines += [f"    {share:6.1%}  {fn}" for fn, share in summary["inclusive"][:top]]
    return "\n".join(lines)
