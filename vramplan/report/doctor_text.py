"""DoctorReport -> terminal text: the setup, the verdict with its breakdown, findings, ranked fixes, alternatives."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from .text import render_estimate
from .units import gib, gib_num

if TYPE_CHECKING:
    from ..doctor.diagnose import DoctorReport
    from ..doctor.prescribe import Option

WIDTH = 100


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent) or [indent]


def _header(report: DoctorReport) -> list[str]:
    ctx = report.context
    launch = ctx.launch
    lines = []
    where = report.script_path or "--args"
    if launch is not None:
        cmd = f"{launch.launcher} {launch.entry}"
        if launch.num_commands > 1:
            cmd = f"command {launch.command_index} of {launch.num_commands} (line {launch.line}): {cmd}; use --command N for another"
        lines.append(f"vramplan doctor: {where} [{cmd}]")
    if ctx.ds is not None:
        ds = ctx.ds
        autos = f", auto: {', '.join(ds.auto_keys)}" if ds.auto_keys else ""
        lines += _wrap(f"DeepSpeed: {ds.source} (ZeRO-{ds.zero_stage}{autos})", "  ")
    lines += _wrap(f"model: {ctx.model_how}", "  ")
    if launch is not None:
        cluster = ctx.scenario.cluster
        lines.append(f"  launcher starts: {launch.gpu_count_source}; checked on {cluster.world_size}x {cluster.gpu.display_name}")
    host = f"  host RAM: {gib(ctx.host_ram_bytes)} per node"
    if ctx.host_ram_assumed:
        host += " (assumed: 2x the node's GPU memory; pass --host-ram)"
    lines.append(host)
    if launch is not None and launch.unknown_flags:
        lines += _wrap("unknown flags (not used by the estimate): " + " ".join(launch.unknown_flags), "  ")
    for note in ctx.notes:
        lines += _wrap(f"note: {note}", "  ")
    return lines


def _findings(report: DoctorReport) -> list[str]:
    if not report.findings:
        return ["Findings: none."]
    counts = {s: sum(f.severity.value == s for f in report.findings) for s in ("error", "warning", "info")}
    lines = ["Findings (" + ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n) + "):"]
    for f in report.findings:
        lines.append(f"  [{f.severity.value.upper()}] {f.rule_id} {f.title}")
        lines += _wrap(f.explanation, "      ")
        if f.fix is not None:
            changes = "; ".join(c.describe() for c in f.fix.changes)
            lines += _wrap(f"fix: {f.fix.title}" + (f" -> {changes}" if changes else ""), "      ")
        lines += _wrap("evidence: " + " ".join(f.evidence), "      ")
    return lines


def _option_lines(n: int, option: Option) -> list[str]:
    est = option.estimate
    verdict = "FITS" if option.fits else ("HOST" if est.fits_gpu else "OOM")
    host = ""
    if est.fits_gpu and est.fits_host is False:
        host = f"  host RAM {gib_num(est.host_ram_bytes)} GiB/node > {gib_num(est.scenario.cluster.host_ram_bytes or 0)} GiB"
    head = f"  {n:>2}. {verdict:<5}{gib_num(est.device_used_bytes):>8} GiB  (saves {gib_num(option.saved_bytes):>6})  "
    lines = [f"{head}{option.title}{host}"]
    changes = [c.describe() for c in option.changes if c.target != "hardware"]
    if changes:
        lines += _wrap("-> " + "; ".join(changes), "          ")
    for note in option.notes:
        lines += _wrap(f"note: {note}", "          ")
    return lines


def _fixes(report: DoctorReport) -> list[str]:
    ctx = report.context
    cluster = ctx.scenario.cluster
    usable = ctx.estimate.usable_bytes
    p = report.prescription
    ranked = p.ranked
    method = ctx.scenario.train.method.value
    kept = "full fine-tuning" if method == "full" else f"your training method ({method})"
    lines = [(f"Fixes that keep {kept} on {cluster.world_size}x {cluster.gpu.display_name} "
              f"(predicted peak per GPU; usable {gib(usable)}; FITS / OOM / HOST = GPU fits but host RAM does not):")]
    if not ranked:
        lines.append("  none applicable")
    for n, option in enumerate(ranked, start=1):
        lines += _option_lines(n, option)
    best = p.best
    if best is not None:
        index = ranked.index(best) + 1
        lines.append(f"Recommended: #{index} {best.title} -> {gib(best.peak_bytes)} per GPU "
                     f"(margin {gib(best.estimate.margin_bytes)}). Write it with --fix-dir DIR.")
    else:
        closest = min(ranked, key=lambda o: o.peak_bytes) if ranked else None
        text = (f"Nothing that keeps full fine-tuning fits on {cluster.world_size}x {cluster.gpu.display_name}")
        if closest is not None:
            est = closest.estimate
            text += (f": the closest, {closest.title}, still needs {gib(est.device_used_bytes)} per GPU"
                     + (f" and {gib(est.host_ram_bytes)} of host RAM per node" if est.fits_gpu else "") + ".")
        lines += _wrap(text, "")
    return lines


def _alternatives(report: DoctorReport, start: int) -> list[str]:
    if not report.alternatives:
        return []
    lines = ["Alternatives (change the method or the hardware):"]
    for n, option in enumerate(sorted(report.alternatives, key=lambda o: o.rank_key()), start=start):
        lines += _option_lines(n, option)
    fitting = report.fitting_alternatives
    if not fitting:
        lines.append("  none of these fits either.")
    return lines


def render_doctor(report: DoctorReport) -> str:
    """The default text output of ``vramplan doctor``."""
    lines = _header(report)
    lines.append("")
    lines.append(render_estimate(report.context.estimate, title="Your setup"))
    lines.append("")
    lines += _findings(report)
    lines.append("")
    lines += _fixes(report)
    if report.alternatives:
        lines.append("")
        lines += _alternatives(report, start=len(report.prescription.ranked) + 1)
    return "\n".join(lines)
