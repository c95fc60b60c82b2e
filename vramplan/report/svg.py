"""Charts as inline SVG text (no dependency): for HTML reports and the local web page.

Owns drawing the chart data of ``charts.py`` (stacked bars with capacity/usable lines, sweeps with the
OOM boundary) as an ``<svg>`` element meant to be placed inside an HTML document (no XML namespace, no
external references, every label escaped). Bytes become GiB labels here.
"""

from __future__ import annotations

import math
from html import escape

from ..core.units import GiB
from .charts import (
    CAPACITY_COLOR,
    FIT_COLOR,
    OOM_COLOR,
    USABLE_COLOR,
    StackedChart,
    SweepChart,
)

WIDTH, HEIGHT = 720, 380
LEFT, RIGHT, TOP, BOTTOM = 64, 200, 36, 56
FONT = 'font-family="system-ui,-apple-system,Segoe UI,Roboto,sans-serif"'


def _nice_step(top_gib: float, ticks: int = 6) -> float:
    raw = max(top_gib / ticks, 1e-9)
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


def _axis_top(max_bytes: int) -> tuple[float, float]:
    """(top of the y axis in GiB, tick step in GiB)."""
    top = max_bytes / GiB * 1.08
    step = _nice_step(top)
    return math.ceil(top / step) * step, step


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


class _Canvas:
    def __init__(self, title: str, kind: str) -> None:
        self.parts: list[str] = [
            (f'<svg class="vp-chart" data-chart="{escape(kind)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}" {FONT} font-size="11">'),
            f'<title>{escape(title)}</title>',
            f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
            f'<text x="{LEFT}" y="20" font-size="14" font-weight="600" fill="#222">{escape(title)}</text>',
        ]

    def add(self, text: str) -> None:
        self.parts.append(text)

    def text(self, x: float, y: float, label: str, anchor: str = "start", size: int = 11, fill: str = "#333",
             extra: str = "") -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}"{extra}>'
                 f'{escape(label)}</text>')

    def line(self, x1: float, y1: float, x2: float, y2: float, color: str, width: float = 1.0,
             dash: str = "", cls: str = "") -> None:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        c = f' class="{cls}"' if cls else ""
        self.add(f'<line{c} x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                 f'stroke-width="{width}"{d}/>')

    def done(self) -> str:
        return "".join(self.parts) + "</svg>"


def _y_axis(c: _Canvas, top_gib: float, step: float) -> None:
    plot_h = HEIGHT - TOP - BOTTOM
    n = round(top_gib / step)
    for i in range(n + 1):
        value = i * step
        y = HEIGHT - BOTTOM - plot_h * value / top_gib
        c.line(LEFT, y, WIDTH - RIGHT, y, "#e6e6e6")
        c.text(LEFT - 6, y + 4, _fmt(value), anchor="end")
    c.line(LEFT, TOP, LEFT, HEIGHT - BOTTOM, "#888")
    c.line(LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT, HEIGHT - BOTTOM, "#888")
    c.text(16, TOP + plot_h / 2, "GiB per GPU", anchor="middle",
           extra=f' transform="rotate(-90 16 {TOP + plot_h / 2:.1f})"')


def _legend_lines(c: _Canvas, y: float) -> float:
    x = WIDTH - RIGHT + 14
    c.line(x, y, x + 18, y, CAPACITY_COLOR, 2.5)
    c.text(x + 24, y + 4, "capacity")
    y += 16
    c.line(x, y, x + 18, y, USABLE_COLOR, 2, "5 3")
    c.text(x + 24, y + 4, "usable (capacity - headroom)")
    return y + 18


def render_stacked_svg(chart: StackedChart) -> str:
    """Stacked bars, one per candidate or phase, with per-bar capacity (solid) and usable (dashed) lines."""
    c = _Canvas(chart.title, "stacked")
    top_gib, step = _axis_top(chart.max_bytes)
    _y_axis(c, top_gib, step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(chart.bars), 1)
    slot = plot_w / n

    def y_of(num_bytes: int) -> float:
        return HEIGHT - BOTTOM - plot_h * (num_bytes / GiB) / top_gib

    for i, bar in enumerate(chart.bars):
        x0 = LEFT + i * slot
        bw = min(slot * 0.62, 90)
        bx = x0 + (slot - bw) / 2
        acc = 0
        for seg in bar.segments:
            y1, y2 = y_of(acc + seg.bytes), y_of(acc)
            c.add(f'<rect x="{bx:.1f}" y="{y1:.1f}" width="{bw:.1f}" height="{max(y2 - y1, 0.0):.2f}" '
                  f'fill="{seg.color}" data-key="{escape(seg.key)}" data-bytes="{seg.bytes}">'
                  f'<title>{escape(seg.key)}: {seg.bytes / GiB:.2f} GiB</title></rect>')
            acc += seg.bytes
        color = "#1a7f37" if bar.fits else OOM_COLOR
        c.line(x0, y_of(bar.capacity_bytes), x0 + slot, y_of(bar.capacity_bytes), CAPACITY_COLOR, 2.5, cls="capacity")
        c.line(x0, y_of(bar.usable_bytes), x0 + slot, y_of(bar.usable_bytes), USABLE_COLOR, 2, "5 3", cls="usable")
        label = bar.label if len(bar.label) <= 28 else bar.label[:27] + "…"
        c.text(x0 + slot / 2, HEIGHT - BOTTOM + 16, label, anchor="middle", size=10 if n > 4 else 11)
        c.text(x0 + slot / 2, HEIGHT - BOTTOM + 30, f"{acc / GiB:.2f} GiB {'fits' if bar.fits else 'OOM'}",
               anchor="middle", fill=color, size=10, extra=' font-weight="600"')
    y = _legend_lines(c, TOP + 6)
    for key in reversed(chart.keys):
        color = next(s.color for b in chart.bars for s in b.segments if s.key == key)
        c.add(f'<rect x="{WIDTH - RIGHT + 14}" y="{y - 8:.1f}" width="12" height="10" fill="{color}"/>')
        c.text(WIDTH - RIGHT + 32, y + 1, key, size=10)
        y += 14
    return c.done()


def render_sweep_svg(chart: SweepChart) -> str:
    """Device use against micro-batch or sequence length (log2 x axis), the lines, and the OOM boundary."""
    c = _Canvas(chart.title, "sweep")
    top_gib, step = _axis_top(chart.max_bytes)
    _y_axis(c, top_gib, step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [p.value for p in chart.points] or [1]
    lo, hi = math.log2(min(values)), math.log2(max(values))
    span = max(hi - lo, 1.0)

    def x_of(value: float) -> float:
        return LEFT + 20 + (plot_w - 40) * (math.log2(value) - lo) / span

    def y_of(num_bytes: int) -> float:
        return HEIGHT - BOTTOM - plot_h * (num_bytes / GiB) / top_gib

    c.line(LEFT, y_of(chart.capacity_bytes), WIDTH - RIGHT, y_of(chart.capacity_bytes), CAPACITY_COLOR, 2.5,
           cls="capacity")
    c.line(LEFT, y_of(chart.usable_bytes), WIDTH - RIGHT, y_of(chart.usable_bytes), USABLE_COLOR, 2, "5 3",
           cls="usable")
    if chart.max_fitting is not None and chart.max_fitting < max(values):
        bx = x_of(chart.max_fitting)
        c.add(f'<rect x="{bx:.1f}" y="{TOP}" width="{WIDTH - RIGHT - bx:.1f}" height="{plot_h}" fill="{OOM_COLOR}" '
              f'fill-opacity="0.07"/>')
        c.line(bx, TOP, bx, HEIGHT - BOTTOM, OOM_COLOR, 1.5, "4 3", cls="oom-boundary")
        c.text(bx + 4, TOP + 12, f"OOM above {chart.max_fitting}", fill=OOM_COLOR, size=10)
    elif chart.max_fitting is None:
        c.text(LEFT + 8, TOP + 12, "OOM at every value shown", fill=OOM_COLOR, size=10)
    path = " ".join(f"{'M' if i == 0 else 'L'}{x_of(p.value):.1f},{y_of(p.device_used_bytes):.1f}"
                    for i, p in enumerate(chart.points))
    if path:
        c.add(f'<path d="{path}" fill="none" stroke="#555" stroke-width="1.5"/>')
    for p in chart.points:
        x, y = x_of(p.value), y_of(p.device_used_bytes)
        color = FIT_COLOR if p.fits else OOM_COLOR
        if p.value == chart.current:
            c.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="none" stroke="#222" stroke-width="1.5"/>')
        c.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}" data-value="{p.value}" '
              f'data-bytes="{p.device_used_bytes}"><title>{p.value}: {p.device_used_bytes / GiB:.2f} GiB'
              f'{"" if p.fits else " (OOM)"}</title></circle>')
        c.text(x, HEIGHT - BOTTOM + 16, str(p.value), anchor="middle", size=10)
    c.text(LEFT + plot_w / 2, HEIGHT - 12, chart.x_label, anchor="middle")
    y = _legend_lines(c, TOP + 6)
    for color, label in ((FIT_COLOR, "fits"), (OOM_COLOR, "OOM")):
        c.add(f'<circle cx="{WIDTH - RIGHT + 20}" cy="{y - 3:.1f}" r="4.5" fill="{color}"/>')
        c.text(WIDTH - RIGHT + 32, y + 1, label)
        y += 16
    c.add(f'<circle cx="{WIDTH - RIGHT + 20}" cy="{y - 3:.1f}" r="8" fill="none" stroke="#222" stroke-width="1.5"/>')
    c.text(WIDTH - RIGHT + 32, y + 1, f"this setup ({chart.current})")
    y += 18
    fit_text = "none fits" if chart.max_fitting is None else f"largest that fits: {chart.max_fitting}"
    c.text(WIDTH - RIGHT + 14, y + 4, fit_text, size=10, fill="#222")
    return c.done()


def render_chart_svg(chart: StackedChart | SweepChart) -> str:
    """Either kind of chart as an inline ``<svg>`` element."""
    if isinstance(chart, StackedChart):
        return render_stacked_svg(chart)
    return render_sweep_svg(chart)
