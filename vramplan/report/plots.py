"""Charts as PNG images with matplotlib (optional extra ``plot``).

Owns drawing the chart data of ``charts.py`` with matplotlib's Agg canvas (no display, no global
backend switch): stacked bars with capacity/usable lines, sweeps with the OOM boundary. Rendering
returns PNG bytes; ``write_pngs`` writes files only once every picture has been drawn. matplotlib is
imported inside the functions, with an error naming ``pip install "vramplan[plot]"`` when it is missing.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.errors import VramplanError
from ..core.units import GiB
from .charts import (
    CAPACITY_COLOR,
    FIT_COLOR,
    OOM_COLOR,
    USABLE_COLOR,
    EstimateCharts,
    StackedChart,
    SweepChart,
)

DPI = 110
SIZE_INCHES = (8.6, 4.6)


def _figure() -> Any:
    """A matplotlib Figure on an Agg canvas (``VramplanError`` when matplotlib is missing)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise VramplanError(
            'PNG charts need matplotlib, which is not installed; run: pip install "vramplan[plot]"'
        ) from exc
    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", bbox_inches="tight")
    return buf.getvalue()


def _cap_lines(ax: Any, x0: float, x1: float, capacity_bytes: int, usable_bytes: int, label: bool) -> None:
    ax.hlines(capacity_bytes / GiB, x0, x1, colors=CAPACITY_COLOR, linewidth=2.5,
              label="capacity" if label else None, zorder=4)
    ax.hlines(usable_bytes / GiB, x0, x1, colors=USABLE_COLOR, linewidth=2, linestyles="dashed",
              label="usable (capacity - headroom)" if label else None, zorder=4)


def render_stacked_png(chart: StackedChart) -> bytes:
    """Stacked bars per candidate or phase with capacity (solid red) and usable (dashed) lines."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    labelled: set[str] = set()
    for i, bar in enumerate(chart.bars):
        bottom = 0.0
        for seg in bar.segments:
            height = seg.bytes / GiB
            ax.bar(i, height, bottom=bottom, width=0.6, color=seg.color, edgecolor="white", linewidth=0.4,
                   label=seg.key if seg.key not in labelled else None, zorder=3)
            labelled.add(seg.key)
            bottom += height
        _cap_lines(ax, i - 0.5, i + 0.5, bar.capacity_bytes, bar.usable_bytes, label=i == 0)
    ax.set_xticks(range(len(chart.bars)))
    ax.set_xticklabels([f"{b.label}\n{b.total_bytes / GiB:.2f} GiB {'fits' if b.fits else 'OOM'}" for b in chart.bars],
                       fontsize=8 if len(chart.bars) > 4 else 9)
    for tick, bar in zip(ax.get_xticklabels(), chart.bars):
        tick.set_color("#1a7f37" if bar.fits else OOM_COLOR)
    ax.set_xlim(-0.5, len(chart.bars) - 0.5)
    ax.set_ylim(0, chart.max_bytes / GiB * 1.1)
    ax.set_ylabel("GiB per GPU")
    ax.set_title(chart.title, fontsize=11, loc="left")
    ax.grid(axis="y", color="#e6e6e6", zorder=0)
    handles, labels = ax.get_legend_handles_labels()
    by_label = dict(zip(labels, handles))
    order = [k for k in reversed(chart.keys)] + ["usable (capacity - headroom)", "capacity"]
    ax.legend([by_label[k] for k in order if k in by_label], [k for k in order if k in by_label],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return _png(fig)


def render_sweep_png(chart: SweepChart) -> bytes:
    """Device use against the knob (log2 x axis), green fits / red OOM points, and the OOM boundary."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    xs = [p.value for p in chart.points]
    ys = [p.device_used_bytes / GiB for p in chart.points]
    ax.set_xscale("log", base=2)
    ax.plot(xs, ys, color="#555555", linewidth=1.5, zorder=3)
    ax.scatter(xs, ys, c=[FIT_COLOR if p.fits else OOM_COLOR for p in chart.points], s=36, zorder=4)
    current = [p for p in chart.points if p.value == chart.current]
    if current:
        ax.scatter([chart.current], [current[0].device_used_bytes / GiB], s=160, facecolors="none",
                   edgecolors="#222222", linewidths=1.5, zorder=5, label=f"this setup ({chart.current})")
    lo, hi = (min(xs), max(xs)) if xs else (1, 2)
    _cap_lines(ax, lo / 1.3, hi * 1.3, chart.capacity_bytes, chart.usable_bytes, label=True)
    if chart.max_fitting is not None and xs and chart.max_fitting < hi:
        ax.axvline(chart.max_fitting, color=OOM_COLOR, linestyle=":", linewidth=1.5, zorder=2,
                   label=f"OOM above {chart.max_fitting}")
        ax.axvspan(chart.max_fitting, hi * 1.3, color=OOM_COLOR, alpha=0.07, zorder=1)
    elif chart.max_fitting is None:
        ax.text(0.02, 0.95, "OOM at every value shown", transform=ax.transAxes, color=OOM_COLOR, fontsize=9,
                va="top")
    ax.set_xlim(lo / 1.3, hi * 1.3)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs], fontsize=8)
    ax.minorticks_off()
    ax.set_ylim(0, chart.max_bytes / GiB * 1.1)
    ax.set_xlabel(chart.x_label)
    ax.set_ylabel("GiB per GPU")
    ax.set_title(chart.title, fontsize=11, loc="left")
    ax.grid(color="#e6e6e6", zorder=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _png(fig)


def render_chart_png(chart: StackedChart | SweepChart) -> bytes:
    """Either kind of chart as PNG bytes."""
    if isinstance(chart, StackedChart):
        return render_stacked_png(chart)
    if not chart.points:
        raise VramplanError(f"{chart.title}: no point could be estimated")
    return render_sweep_png(chart)


PNG_NAMES = {
    "breakdown": "breakdown.png",
    "phases": "phases.png",
    "micro_batch": "sweep_micro_batch.png",
    "seq_len": "sweep_seq_len.png",
}
"""File name of each chart inside ``--png DIR``."""


def render_pngs(charts: EstimateCharts) -> dict[str, bytes]:
    """File name -> PNG bytes for the four charts (of an estimate, a plan search or a doctor report)."""
    return {PNG_NAMES[name]: render_chart_png(getattr(charts, name)) for name in PNG_NAMES}


def write_pngs(images: Mapping[str, bytes], directory: str | Path) -> list[Path]:
    """Write already-rendered PNGs into ``directory`` (created if its parent exists); returns the paths."""
    folder = Path(directory)
    if not folder.exists():
        if not folder.parent.exists():
            raise VramplanError(f"--png {directory}: parent folder {folder.parent} does not exist; create it first")
        folder.mkdir()
    elif not folder.is_dir():
        raise VramplanError(f"--png {directory}: exists and is not a folder; give a folder")
    paths = []
    for name, data in images.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths
