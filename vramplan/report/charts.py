"""Chart data: what the pictures show, as plain values, shared by the PNG (matplotlib) and SVG renderers.

Owns the colour of every breakdown key, the stacked-bar charts (per-GPU breakdown of each candidate,
per-phase timeline) and the sweeps (memory against micro-batch and against sequence length, with the
OOM boundary found by re-estimating the scenario with ``dataclasses.replace``). Every number is int
bytes; turning them into GiB is the renderers' job. Imports ``vramplan.core`` only (no matplotlib).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..core.breakdown import KEYS
from ..core.errors import VramplanError
from ..core.estimate import PHASES, Estimate, estimate_scenario

KEY_COLORS: dict[str, str] = {
    "model_states/params": "#1f4e79",
    "model_states/grads": "#2e75b6",
    "model_states/master": "#5b9bd5",
    "model_states/optimizer": "#9dc3e6",
    "activations/llm": "#c55a11",
    "activations/vision": "#ed7d31",
    "activations/projector": "#f4b183",
    "activations/logits_loss": "#843c0c",
    "buffers/zero_buckets": "#375623",
    "buffers/gathered_params": "#548235",
    "buffers/ddp_buckets": "#a9d18e",
    "buffers/moe": "#70ad47",
    "temporaries/recompute": "#7030a0",
    "temporaries/backward": "#9966cc",
    "temporaries/optimizer_step": "#c9a0dc",
    "temporaries/dequant": "#4b0082",
    "overhead/cublas": "#404040",
    "overhead/allocator": "#7f7f7f",
    "overhead/cuda_context": "#a6a6a6",
    "overhead/nccl": "#d0d0d0",
}
"""One colour per breakdown key; a group (model_states, activations ...) shares a hue."""

CAPACITY_COLOR = "#e00000"
"""The GPU's total capacity line (no breakdown key uses this red)."""
USABLE_COLOR = "#c00080"
"""Capacity minus headroom, drawn dashed."""
FIT_COLOR = "#2a9d3f"
OOM_COLOR = "#e00000"

MICRO_BATCH_VALUES = (1, 2, 4, 8, 16, 32, 64)
SEQ_LEN_VALUES = (512, 1024, 2048, 4096, 8192, 16384, 32768)


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One breakdown key inside a stacked bar."""

    key: str
    bytes: int
    color: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One stacked bar: a candidate's or a phase's per-GPU device use."""

    label: str
    segments: tuple[Segment, ...]
    capacity_bytes: int
    usable_bytes: int

    @property
    def total_bytes(self) -> int:
        """Height of the bar (device used, nvidia-smi)."""
        return sum(s.bytes for s in self.segments)

    @property
    def fits(self) -> bool:
        """Whether the bar stays within the usable line."""
        return self.total_bytes <= self.usable_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StackedChart:
    """Stacked bars with capacity and usable lines per bar."""

    title: str
    bars: tuple[Bar, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """Breakdown keys present in any bar, in display order (the legend)."""
        present = {s.key for b in self.bars for s in b.segments}
        return tuple(k for k in KEYS if k in present)

    @property
    def max_bytes(self) -> int:
        """Top of the y axis before padding."""
        return max([b.total_bytes for b in self.bars] + [b.capacity_bytes for b in self.bars] + [1])


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepPoint:
    """Device use at one value of the swept knob."""

    value: int
    device_used_bytes: int
    fits: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepChart:
    """Per-GPU device use against one knob, with the OOM boundary."""

    title: str
    knob: str
    """``micro_batch`` or ``seq_len``."""
    x_label: str
    points: tuple[SweepPoint, ...]
    current: int
    """The scenario's own value."""
    capacity_bytes: int
    usable_bytes: int
    max_fitting: int | None
    """Largest value of the knob between the first and last point that fits the GPU (every integer
    searched); None: not even the first point fits."""

    @property
    def max_bytes(self) -> int:
        """Top of the y axis before padding."""
        return max([p.device_used_bytes for p in self.points] + [self.capacity_bytes, 1])


def segments_of(items: dict[str, int] | Any) -> tuple[Segment, ...]:
    """Non-zero breakdown keys as coloured segments, bottom first."""
    return tuple(Segment(key=k, bytes=int(items[k]), color=KEY_COLORS[k]) for k in KEYS if items[k])


def breakdown_chart(candidates: Sequence[tuple[str, Estimate]], title: str = "Per-GPU memory at the peak") -> StackedChart:
    """One bar per candidate: its peak phase's breakdown, with its GPU's capacity and usable lines."""
    bars = tuple(
        Bar(label=label, segments=segments_of(est.peak.breakdown.items), capacity_bytes=est.capacity_bytes,
            usable_bytes=est.usable_bytes)
        for label, est in candidates
    )
    return StackedChart(title=title, bars=bars)


def phase_chart(est: Estimate) -> StackedChart:
    """One bar per phase of a step (forward, backward, optimizer step)."""
    names = {"forward": "forward", "backward": "backward", "optimizer": "optimizer step"}
    bars = tuple(
        Bar(label=names.get(p.phase, p.phase), segments=segments_of(p.breakdown.items),
            capacity_bytes=est.capacity_bytes, usable_bytes=est.usable_bytes)
        for p in est.phases
    )
    return StackedChart(title="Per-GPU memory by phase of a step", bars=bars)


def _estimate_with(est: Estimate, knob: str, value: int) -> Estimate | None:
    """The scenario re-estimated with ``train.<knob> = value``; None when that setting is invalid."""
    scn = est.scenario
    try:
        return estimate_scenario(replace(scn, train=replace(scn.train, **{knob: value})))
    except VramplanError:
        return None


def _max_fitting(est: Estimate, knob: str, lower: int, upper: int) -> int | None:
    """Largest value in [lower, upper] that fits the GPU (device use grows with the knob: binary search)."""
    low_est = _estimate_with(est, knob, lower)
    if low_est is None or not low_est.fits_gpu:
        return None
    lo, hi = lower, upper
    top = _estimate_with(est, knob, hi)
    if top is not None and top.fits_gpu:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        mid_est = _estimate_with(est, knob, mid)
        if mid_est is not None and mid_est.fits_gpu:
            lo = mid
        else:
            hi = mid
    return lo


def sweep_chart(est: Estimate, knob: str, values: Sequence[int] | None = None) -> SweepChart:
    """Device use of ``est``'s scenario as ``train.micro_batch`` or ``train.seq_len`` varies."""
    if knob not in ("micro_batch", "seq_len"):
        raise VramplanError(f"sweep knob={knob!r}: use micro_batch or seq_len")
    current = int(getattr(est.scenario.train, knob))
    base = MICRO_BATCH_VALUES if knob == "micro_batch" else SEQ_LEN_VALUES
    chosen = sorted({int(v) for v in (values or base) if int(v) >= 1} | {current})
    points: list[SweepPoint] = []
    for value in chosen:
        other = est if value == current else _estimate_with(est, knob, value)
        if other is not None:
            points.append(SweepPoint(value=value, device_used_bytes=other.device_used_bytes, fits=other.fits_gpu))
    label = "micro-batch per GPU" if knob == "micro_batch" else "sequence length (tokens per sample)"
    return SweepChart(
        title=f"Per-GPU memory against {'micro-batch' if knob == 'micro_batch' else 'sequence length'}",
        knob=knob, x_label=label, points=tuple(points), current=current, capacity_bytes=est.capacity_bytes,
        usable_bytes=est.usable_bytes, max_fitting=_max_fitting(est, knob, min(chosen), max(chosen)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class EstimateCharts:
    """The four pictures of one estimate."""

    breakdown: StackedChart
    phases: StackedChart
    micro_batch: SweepChart
    seq_len: SweepChart


def estimate_charts(est: Estimate, label: str | None = None,
                    candidates: Sequence[tuple[str, Estimate]] | None = None) -> EstimateCharts:
    """Charts of an estimate; ``candidates`` (e.g. the ranked plans) replace the single breakdown bar."""
    bars = list(candidates) if candidates else [(label or est.scenario.model.name, est)]
    return EstimateCharts(
        breakdown=breakdown_chart(bars),
        phases=phase_chart(est),
        micro_batch=sweep_chart(est, "micro_batch"),
        seq_len=sweep_chart(est, "seq_len"),
    )


def chart_to_dict(chart: StackedChart | SweepChart) -> dict[str, Any]:
    """JSON-ready data of a chart (bytes as ints), embedded in HTML reports and served by the web app."""
    if isinstance(chart, StackedChart):
        return {
            "type": "stacked", "title": chart.title,
            "bars": [
                {"label": b.label, "capacity_bytes": b.capacity_bytes, "usable_bytes": b.usable_bytes,
                 "total_bytes": b.total_bytes, "segments": {s.key: s.bytes for s in b.segments}}
                for b in chart.bars
            ],
        }
    return {
        "type": "sweep", "title": chart.title, "knob": chart.knob, "current": chart.current,
        "capacity_bytes": chart.capacity_bytes, "usable_bytes": chart.usable_bytes,
        "max_fitting": chart.max_fitting,
        "points": [{"value": p.value, "device_used_bytes": p.device_used_bytes, "fits": p.fits} for p in chart.points],
    }


def charts_to_dict(charts: EstimateCharts) -> dict[str, Any]:
    """All four charts as JSON-ready data."""
    return {name: chart_to_dict(getattr(charts, name)) for name in ("breakdown", "phases", "micro_batch", "seq_len")}



def plan_charts(result: Any, top: int = 5) -> EstimateCharts:
    """Charts of a plan search: the starting setup and the best ``top`` plans side by side; the phases and
    sweeps of the best plan (of the starting setup when nothing fits)."""
    candidates = [("your setup", result.start_estimate)]
    candidates += [(f"plan #{i}", p.estimate) for i, p in enumerate(result.plans[:top], start=1)]
    best = result.plans[0].estimate if result.plans else result.start_estimate
    return EstimateCharts(
        breakdown=breakdown_chart(candidates, title="Per-GPU memory at the peak: your setup and the ranked plans"),
        phases=phase_chart(best), micro_batch=sweep_chart(best, "micro_batch"), seq_len=sweep_chart(best, "seq_len"),
    )


def sizing_chart(rows: Sequence[Any]) -> StackedChart:
    """``plan --gpu-type/--compare``: one bar per GPU type and method, the best plan at the smallest count that
    fits (its peak breakdown against that GPU's own capacity); rows where nothing fits have no bar."""
    candidates = [(f"{s.count}x {s.gpu.id} {s.method.value}", s.plan.estimate)
                  for s in rows if s.count is not None and s.plan is not None]
    return breakdown_chart(candidates, title="Per-GPU memory of the best plan at the smallest GPU count that fits")


def doctor_charts(report: Any, top: int = 4) -> EstimateCharts:
    """Charts of a doctor report: the user's setup next to the best-ranked fixes and alternatives; the
    phases and sweeps of the user's setup."""
    est = report.context.estimate
    candidates = [("your setup", est)]
    candidates += [(f"option {i}", o.estimate) for i, o in enumerate(report.ranked_options[:top], start=1)]
    return EstimateCharts(
        breakdown=breakdown_chart(candidates, title="Per-GPU memory at the peak: your setup and the prescribed fixes"),
        phases=phase_chart(est), micro_batch=sweep_chart(est, "micro_batch"), seq_len=sweep_chart(est, "seq_len"),
    )


__all__ = [
    "CAPACITY_COLOR",
    "FIT_COLOR",
    "KEY_COLORS",
    "OOM_COLOR",
    "PHASES",
    "USABLE_COLOR",
    "Bar",
    "EstimateCharts",
    "Segment",
    "StackedChart",
    "SweepChart",
    "SweepPoint",
    "breakdown_chart",
    "chart_to_dict",
    "charts_to_dict",
    "doctor_charts",
    "estimate_charts",
    "phase_chart",
    "sizing_chart",
    "plan_charts",
    "sweep_chart",
]
