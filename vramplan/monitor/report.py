"""Reading a monitored run folder and rendering it: text summary, JSON, and the PNG timeline.

Owns ``load_run`` (``memory_rank*.jsonl`` + ``summary_rank*.json`` + ``oom_rank*.json``; a run that
crashed before writing its summary is summarised from its log), ``run_report`` (per rank: measured
peaks per phase, the prediction, the error per metric, the leak verdict recomputed from the log),
``render_text`` and ``render_png`` (memory per step and phase: peak allocated, peak reserved and
device used, the capacity line, the predicted reserved and device-used lines, OOM markers, the
leak verdict in the title). matplotlib is the ``plot`` extra and is imported inside ``render_png``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import VramplanError
from ..report.units import gib
from .compare import PHASES, compare
from .leaks import leak_verdict

PHASE_OFFSET = {"forward": 0.2, "backward": 0.5, "optimizer": 0.8}


@dataclass
class RankRun:
    """Everything recorded for one rank."""

    rank: int
    header: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    ooms: list[dict[str, Any]] = field(default_factory=list)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # the last line of a killed run may be cut short; anything else is a real error
                if fh.readline() == "":
                    break
                raise VramplanError(f"{path}:{number}: not a JSON line; is this a vramplan run folder?") from None
    return records


def load_run(run_dir: str | Path) -> list[RankRun]:
    """Every rank recorded in ``run_dir`` (sorted by rank)."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise VramplanError(f"RUN_DIR={str(folder)!r}: no such folder; give the folder MemoryMonitor wrote")
    logs = sorted(folder.glob("memory_rank*.jsonl"))
    if not logs:
        raise VramplanError(f"RUN_DIR={str(folder)!r}: no memory_rank*.jsonl file; "
                            "is this the run_dir given to MemoryMonitor / VramplanCallback?")
    runs = []
    for path in logs:
        try:
            rank = int(path.stem[len("memory_rank"):])
        except ValueError:
            continue
        run = RankRun(rank=rank)
        for rec in _read_jsonl(path):
            kind = rec.get("kind")
            if kind == "header":
                run.header = rec
            elif kind == "step":
                run.steps.append(rec)
            elif kind == "phase":
                run.phases.append(rec)
            elif kind == "event":
                run.events.append(rec)
        summary = folder / f"summary_rank{rank}.json"
        if summary.is_file():
            try:
                run.summary = json.loads(summary.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                raise VramplanError(f"{summary}: not valid JSON") from None
        for oom in sorted(folder.glob(f"oom_rank{rank}_step*.json")):
            try:
                run.ooms.append(json.loads(oom.read_text(encoding="utf-8")))
            except json.JSONDecodeError:
                continue
        runs.append(run)
    return sorted(runs, key=lambda r: r.rank)


def _max(values: list[Any]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def run_report(run: RankRun) -> dict[str, Any]:
    """Measured peaks, prediction, comparison and leak verdict of one rank (all bytes int)."""
    phases: dict[str, dict[str, int | None]] = {}
    for rec in run.phases:
        agg = phases.setdefault(rec["phase"], {})
        for key in ("peak_allocated_bytes", "peak_reserved_bytes", "device_used_bytes"):
            agg[key] = _max([agg.get(key), rec.get(key)])
    prediction = run.header.get("prediction")
    source = (run.header.get("source") or {}).get("source")
    verdict = leak_verdict(run.steps)
    leak = verdict.as_dict()
    headrooms = [int(r["headroom_bytes"]) for r in run.steps if r.get("headroom_bytes") is not None]
    if run.summary and (run.summary.get("leak") or {}).get("sites"):
        leak["sites"] = run.summary["leak"]["sites"]
    return {
        "rank": run.rank,
        "source": source,
        "steps": len(run.steps),
        "capacity_bytes": run.header.get("capacity_bytes"),
        "measured": {
            "peak_allocated_bytes": _max([r.get("peak_allocated_bytes") for r in run.steps]),
            "peak_reserved_bytes": _max([r.get("peak_reserved_bytes") for r in run.steps]),
            "device_used_bytes": _max([r.get("device_used_bytes") for r in run.steps]),
            "host_rss_bytes": _max([r.get("host_rss_bytes") for r in run.steps]),
            "phases": phases,
        },
        "prediction": prediction,
        "comparison": compare(phases, prediction) if source in ("cuda", "fake", "callable") else {},
        "min_headroom_bytes": min(headrooms) if headrooms else None,
        "warnings": [e for e in run.events if e.get("event") not in ("oom", "exception")],
        "leak": leak,
        "ooms": [{k: o.get(k) for k in ("step", "phase", "snapshot_path", "report_path", "message")} for o in run.ooms],
        "overhead": (run.summary or {}).get("overhead"),
    }


def _g(value: int | None) -> str:
    return "-" if value is None else gib(value)


def render_text(reports: list[dict[str, Any]]) -> str:
    """Human summary of every rank."""
    lines: list[str] = []
    for rep in reports:
        lines.append(f"rank {rep['rank']}: {rep['steps']} steps, source {rep['source']}, "
                     f"capacity {_g(rep['capacity_bytes'])}")
        m = rep["measured"]
        lines.append(f"  peak allocated {_g(m['peak_allocated_bytes'])} | peak reserved {_g(m['peak_reserved_bytes'])}"
                     f" | device used {_g(m['device_used_bytes'])} | host RSS {_g(m['host_rss_bytes'])}")
        comp = rep.get("comparison") or {}
        if comp:
            lines.append("  phase        metric        measured    predicted   error")
            for phase in (*PHASES, "overall"):
                for metric, row in (comp.get(phase) or {}).items():
                    err = row.get("error")
                    lines.append(f"  {phase:<12} {metric:<12} {_g(row['measured_bytes']):>11} "
                                 f"{_g(row['predicted_bytes']):>11}  {'-' if err is None else f'{err:+.1%}'}")
        elif rep.get("prediction"):
            lines.append("  (prediction not compared: this run was not measured on a CUDA device)")
        if rep.get("min_headroom_bytes") is not None:
            lines.append(f"  smallest headroom {_g(rep['min_headroom_bytes'])}")
        leak = rep["leak"]
        if leak["leak"]:
            lines.append(f"  leak: YES - memory after each step grows {leak['slope_bytes_per_step'] / 2**20:.2f} MiB per step "
                         f"from step {leak['onset_step']} ({_g(leak['growth_bytes'])} over {leak['steps_analyzed']} steps, "
                         f"Mann-Kendall p={leak['p_value']:.2g})")
        else:
            lines.append(f"  leak: no - {leak['reason']}")
        for site in leak.get("sites", [])[:5]:
            lines.append(f"    {_g(site['bytes'])} in {site['blocks']} blocks from {site['site']}")
        for w in rep["warnings"]:
            lines.append(f"  warning (step {w.get('step')}): {w.get('message')}")
        for o in rep["ooms"]:
            lines.append(f"  OOM at step {o['step']} ({o.get('phase') or 'unknown phase'}): snapshot {o['snapshot_path']} "
                         f"(open at https://pytorch.org/memory_viz), report {o['report_path']}")
        ov = rep.get("overhead")
        if ov and ov.get("fraction") is not None:
            lines.append(f"  monitor overhead {ov['fraction']:.2%} of wall time ({ov['per_step_us']:.0f} µs per step)")
    return "\n".join(lines)


def _import_pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VramplanError('the PNG timeline needs matplotlib; run: pip install "vramplan[plot]" '
                            "(or pass --no-plot for the text summary)") from None
    return plt


def render_png(runs: list[RankRun], reports: list[dict[str, Any]], max_panels: int = 8) -> bytes:
    """The timeline as PNG bytes: one panel per rank (the ``max_panels`` highest peaks)."""
    plt = _import_pyplot()
    pairs = sorted(zip(runs, reports), key=lambda p: -(p[1]["measured"]["peak_reserved_bytes"] or 0))[:max_panels]
    pairs.sort(key=lambda p: p[0].rank)
    gi = float(2**30)
    fig, axes = plt.subplots(len(pairs), 1, figsize=(12, 4.2 * len(pairs)), squeeze=False, dpi=100)
    colors = {"peak_allocated_bytes": "#1f77b4", "peak_reserved_bytes": "#ff7f0e", "device_used_bytes": "#2ca02c"}
    labels = {"peak_allocated_bytes": "peak allocated", "peak_reserved_bytes": "peak reserved",
              "device_used_bytes": "device used (NVML)"}
    for ax, (run, rep) in zip(axes[:, 0], pairs):
        points = sorted(((r["step"] + PHASE_OFFSET.get(r["phase"], 0.5), r) for r in run.phases), key=lambda p: p[0])
        if not points:
            points = [(r["step"] + 0.5, r) for r in run.steps]
        for key in ("peak_allocated_bytes", "peak_reserved_bytes", "device_used_bytes"):
            xs = [x for x, r in points if r.get(key) is not None]
            ys = [r[key] / gi for _, r in points if r.get(key) is not None]
            if xs:
                ax.plot(xs, ys, color=colors[key], label=labels[key], linewidth=1.2, marker="." if len(xs) < 200 else None)
        post = [(r["step"] + 1.0, r["allocated_bytes"] / gi) for r in run.steps if r.get("allocated_bytes") is not None]
        if post:
            ax.plot([p[0] for p in post], [p[1] for p in post], color="#9467bd", linestyle="--", linewidth=1,
                    label="allocated after step (leak test)")
        for phase, marker in (("forward", "^"), ("backward", "v"), ("optimizer", "s")):
            xs = [x for x, r in points if r.get("phase") == phase and r.get("peak_reserved_bytes") is not None]
            ys = [r["peak_reserved_bytes"] / gi for x, r in points if r.get("phase") == phase and r.get("peak_reserved_bytes") is not None]
            if xs and len(xs) < 200:
                ax.scatter(xs, ys, marker=marker, s=18, color=colors["peak_reserved_bytes"], zorder=3,
                           label=f"{phase} (reserved)")
        steps = [r["step"] for r in run.steps] or [0]
        x0, x1 = min(steps), max(steps) + 1
        cap = rep.get("capacity_bytes")
        if cap and rep["source"] in ("cuda", "fake", "callable"):
            ax.axhline(cap / gi, color="#d62728", linewidth=2, label=f"capacity {cap / gi:.1f} GiB")
        pred = rep.get("prediction")
        if pred and rep["source"] in ("cuda", "fake", "callable"):
            ax.axhline(pred["peak_reserved_bytes"] / gi, color=colors["peak_reserved_bytes"], linestyle="--",
                       label=f"predicted reserved {pred['peak_reserved_bytes'] / gi:.1f} GiB")
            ax.axhline(pred["device_used_bytes"] / gi, color=colors["device_used_bytes"], linestyle="--",
                       label=f"predicted device used {pred['device_used_bytes'] / gi:.1f} GiB")
        for o in rep["ooms"]:
            ax.axvline(o["step"] + 0.5, color="black", linestyle=":", label=f"OOM at step {o['step']}")
        leak = rep["leak"]
        verdict = (f"LEAK from step {leak['onset_step']}: +{leak['slope_bytes_per_step'] / 2**20:.2f} MiB/step"
                   if leak["leak"] else "no leak")
        ax.set_title(f"rank {run.rank} ({rep['source']}) - {verdict}", fontsize=11,
                     color="#d62728" if leak["leak"] else "black")
        ax.set_xlim(x0, x1)
        ax.set_xlabel("step (phases: forward 0.2, backward 0.5, optimizer 0.8)")
        ax.set_ylabel("GiB")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
