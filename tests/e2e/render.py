"""Draw a Grafana dashboard's panels as one PNG, from query results, without Grafana.

Panels are placed on Grafana's 24-column grid by their ``gridPos``: ``stat`` panels show the last
value of their first series, ``timeseries`` panels draw every series with its legend (Grafana's
``{{label}}`` legend formats), ``table`` panels list the merged instant results, rows are
headings. Colours follow Grafana's dark theme. Used by the end-to-end dashboard test to make
``docs/traffic-dashboard.png``.
"""

from __future__ import annotations

import datetime
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

Series = dict[str, Any]  # Prometheus result: {"metric": {...}, "values": [[t, v], ...]} or "value"
Results = Mapping[tuple[int, str], Sequence[Series]]

_BG = "#111217"
_PANEL = "#181b1f"
_BORDER = "#2c3235"
_TEXT = "#ccccdc"
_MUTED = "#8e8e9e"
_PALETTE = ("#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#fade2a")
_GRID_UNIT_IN = 0.34  # Grafana's 30 px grid row, scaled to a 20-inch wide figure
_WIDTH_IN = 20.0
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def legend(fmt: str, metric: Mapping[str, str]) -> str:
    """A series name from a Grafana legend format (``{{label}}`` placeholders)."""
    if not fmt or fmt == "__auto":
        labels = {k: v for k, v in metric.items() if k != "__name__"}
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return _LEGEND.sub(lambda m: metric.get(m[1], ""), fmt)


def format_value(value: float, unit: str) -> str:
    """A value as Grafana would print it for the common units."""
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        if value < 1:
            return f"{value * 1000:.1f} ms"
        return f"{value:.2f} s"
    if unit == "bytes":
        for suffix, size in (("MB", 1e6), ("kB", 1e3)):
            if value >= size:
                return f"{value / size:.1f} {suffix}"
        return f"{value:.0f} B"
    suffix = {"reqps": " req/s", "ops": " ops/s"}.get(unit, "")
    return f"{value:.3g}{suffix}"


def _finite(series: Series) -> list[tuple[float, float]]:
    points = series["values"] if "values" in series else [series["value"]]
    return [(float(t), float(v)) for t, v in points if math.isfinite(float(v))]


def _with_gaps(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A NaN where steps are missing, so the line breaks there as in Grafana (which fills the
    missing steps of a range query with nulls) instead of bridging the gap."""
    if len(points) < 3:
        return points
    step = min(b[0] - a[0] for a, b in itertools.pairwise(points))
    out = [points[0]]
    for previous, point in itertools.pairwise(points):
        if point[0] - previous[0] > 1.5 * step:
            out.append((previous[0] + step, math.nan))
        out.append(point)
    return out


def _targets(panel: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [t for t in panel.get("targets", []) if t.get("expr")]


def _frame(ax: Any, title: str) -> None:
    ax.set_facecolor(_PANEL)
    for spine in ax.spines.values():
        spine.set_color(_BORDER)
    ax.set_title(title, color=_TEXT, fontsize=10, loc="left", pad=6)
    ax.tick_params(colors=_MUTED, labelsize=7)


def _stat(ax: Any, panel: Mapping[str, Any], results: Results) -> None:
    _frame(ax, panel["title"])
    ax.set_xticks([])
    ax.set_yticks([])
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    text = "No data"
    for target in _targets(panel):
        for series in results.get((panel["id"], target["refId"]), []):
            points = _finite(series)
            if points:
                text = format_value(points[-1][1], unit)
                break
    ax.text(0.5, 0.42, text, ha="center", va="center", color=_PALETTE[0], fontsize=22,
            fontweight="bold", transform=ax.transAxes)  # fmt: skip


def _timeseries(ax: Any, panel: Mapping[str, Any], results: Results) -> None:
    _frame(ax, panel["title"])
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    color = 0
    for target in _targets(panel):
        for series in results.get((panel["id"], target["refId"]), []):
            points = _finite(series)
            if not points:
                continue
            points = _with_gaps(points)
            times = [datetime.datetime.fromtimestamp(t, datetime.UTC) for t, _ in points]
            label = legend(target.get("legendFormat", ""), series["metric"])
            ax.plot(times, [v for _, v in points], color=_PALETTE[color % len(_PALETTE)],
                    linewidth=1.2, label=label)  # fmt: skip
            color += 1
    ax.grid(color=_BORDER, linewidth=0.5)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))
    if color:
        ax.legend(loc="upper left", fontsize=6, ncol=2, frameon=False, labelcolor=_TEXT)
    else:
        ax.text(0.5, 0.5, "No data", ha="center", color=_MUTED, transform=ax.transAxes)


def _table(ax: Any, panel: Mapping[str, Any], results: Results) -> None:
    _frame(ax, panel["title"])
    ax.set_xticks([])
    ax.set_yticks([])
    overrides = panel.get("fieldConfig", {}).get("overrides", [])
    columns = [o["matcher"]["options"] for o in overrides]
    units = [o["properties"][0]["value"] for o in overrides]
    rows: dict[tuple[tuple[str, str], ...], list[str]] = {}
    label_names: list[str] = []
    for index, target in enumerate(_targets(panel)):
        for series in results.get((panel["id"], target["refId"]), []):
            labels = tuple(sorted(series["metric"].items()))
            label_names = [k for k, _ in labels] or label_names
            row = rows.setdefault(labels, ["-"] * len(columns))
            points = _finite(series)
            if points and index < len(columns):
                row[index] = format_value(points[-1][1], units[index])
    if not rows:
        ax.text(0.5, 0.5, "No data", ha="center", color=_MUTED, transform=ax.transAxes)
        return
    cells = [[v for _, v in labels] + values for labels, values in sorted(rows.items())]
    table = ax.table(cellText=cells, colLabels=label_names + columns, loc="upper center",
                     cellLoc="left", colLoc="left", bbox=(0.01, 0.0, 0.98, 0.92))  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    for cell in table.get_celld().values():
        cell.set_facecolor(_PANEL)
        cell.set_edgecolor(_BORDER)
        cell.get_text().set_color(_TEXT)


def render(board: Mapping[str, Any], results: Results, out: Path, subtitle: str) -> None:
    """Draw `board` with `results` ((panel id, refId) -> Prometheus series) into `out`."""
    panels = board.get("panels", [])
    height_units = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) + 2
    fig = plt.figure(figsize=(_WIDTH_IN, height_units * _GRID_UNIT_IN), facecolor=_BG)
    top = 2 / height_units
    fig.text(0.01, 1 - 0.6 / height_units, board.get("title", ""), color=_TEXT, fontsize=16,
             fontweight="bold", va="center")  # fmt: skip
    fig.text(0.99, 1 - 0.6 / height_units, subtitle, color=_MUTED, fontsize=9, ha="right",
             va="center")  # fmt: skip
    pad_x, pad_y = 0.004, 0.25 / height_units
    for panel in panels:
        pos = panel["gridPos"]
        left = pos["x"] / 24 + pad_x
        width = pos["w"] / 24 - 2 * pad_x
        bottom = 1 - top - (pos["y"] + pos["h"]) / height_units + pad_y
        height = pos["h"] / height_units - 2 * pad_y
        if panel["type"] == "row":
            fig.text(left, bottom + height / 2, panel["title"], color=_TEXT, fontsize=12,
                     fontweight="bold", va="center")  # fmt: skip
            continue
        # Leave room for tick labels inside the panel's box.
        inner = (left + 0.035, bottom + 0.02, width - 0.04, height - 0.04)
        if panel["type"] == "timeseries":
            _timeseries(fig.add_axes(inner), panel, results)
        elif panel["type"] == "stat":
            _stat(fig.add_axes((left, bottom, width, height)), panel, results)
        elif panel["type"] == "table":
            _table(fig.add_axes((left, bottom, width, height)), panel, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor=_BG)
    plt.close(fig)
