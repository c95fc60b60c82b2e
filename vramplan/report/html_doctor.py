"""HTML for ``vramplan doctor``: the launch read, the verdict with its breakdown, findings, ranked fixes, alternatives.

Fragments built with the helpers of ``html.py``; ``render_doctor_html`` wraps them into a self-contained
page with the doctor's JSON document embedded. Evidence links are plain anchors (nothing is fetched).
"""

from __future__ import annotations

from typing import Any

from .charts import EstimateCharts, charts_to_dict, doctor_charts
from .doctor_json import doctor_to_dict
from .html import charts_html, esc, estimate_section, render_page, table
from .units import gib, gib_num


def _evidence(items: Any) -> str:
    links = []
    for item in items:
        text = str(item)
        if text.startswith(("https://", "http://")):
            links.append(f'<a href="{esc(text)}" rel="noreferrer">{esc(text)}</a>')
        else:
            links.append(esc(text))
    return " ".join(links)


def findings_html(report: Any) -> str:
    """Each rule that fired: severity, id, title, explanation, fix, evidence."""
    if not report.findings:
        return "<p>No rule fired.</p>"
    rows = []
    for f in report.findings:
        sev = f.severity.value
        fix = ""
        if f.fix is not None:
            changes = "; ".join(c.describe() for c in f.fix.changes)
            fix = f"<br><b>fix:</b> {esc(f.fix.title)}" + (f" &rarr; <code>{esc(changes)}</code>" if changes else "")
        rows.append((f'<span class="sev-{esc(sev)}">{esc(sev.upper())}</span>', f"<code>{esc(f.rule_id)}</code>",
                     (f"<b>{esc(f.title)}</b><br>{esc(f.explanation)}{fix}<br><small>evidence: "
                      f"{_evidence(f.evidence)}</small>")))
    return table(["severity", "rule", "finding"], rows, cls="findings")


def options_html(report: Any) -> str:
    """Fixes (ranked) then alternatives, numbered as the CLI numbers them, with the predicted peak."""
    rows = []
    n_fixes = len(report.prescription.ranked)
    for n, o in enumerate(report.ranked_options, start=1):
        est = o.estimate
        verdict = "FITS" if o.fits else ("HOST" if est.fits_gpu else "OOM")
        cls = "fits" if o.fits else "oom"
        changes = "; ".join(c.describe() for c in o.changes if c.target != "hardware")
        kind = "fix" if n <= n_fixes else "alternative"
        rows.append((str(n), f'<span class="tag {cls}">{verdict}</span>', esc(kind),
                     f"{esc(o.title)}" + (f"<br><code>{esc(changes)}</code>" if changes else "")
                     + "".join(f"<br><small>{esc(note)}</small>" for note in o.notes),
                     gib_num(est.device_used_bytes), gib_num(o.saved_bytes)))
    if not rows:
        return "<p>No fix applies.</p>"
    return table(["#", "verdict", "kind", "option", "peak GiB", "saves GiB"], rows, numeric=(4, 5), cls="options")


def doctor_section(report: Any, charts: EstimateCharts | None = None) -> str:
    """What was read, the user's setup, findings, fixes and charts."""
    ctx = report.context
    charts = charts or doctor_charts(report)
    launch = ctx.launch
    read = [f"model: {ctx.model_how}"]
    if launch is not None:
        read.append(f"launcher: {launch.launcher} {launch.entry} ({launch.gpu_count_source})")
        if launch.unknown_flags:
            read.append("unknown flags (not used by the estimate): " + " ".join(launch.unknown_flags))
    if ctx.ds is not None:
        read.append(f"DeepSpeed: ZeRO-{ctx.ds.zero_stage}")
    host = f"host RAM: {gib(ctx.host_ram_bytes)} per node" + (" (assumed: 2x the node's GPU memory)" if ctx.host_ram_assumed else "")
    read.append(host)
    read += [f"note: {n}" for n in ctx.notes]
    best = report.prescription.best
    if best is not None:
        rec = (f'<div class="verdict fits" data-verdict="FIX"><b>Fix</b>{esc(best.title)} &rarr; '
               f"{gib(best.peak_bytes)} per GPU (margin {gib(best.estimate.margin_bytes)})</div>")
    elif report.fitting_alternatives:
        alt = report.fitting_alternatives[0]
        rec = (f'<div class="verdict oom" data-verdict="NO FIX"><b>No fix keeps full fine-tuning</b>nearest: '
               f"{esc(alt.title)} &rarr; {gib(alt.peak_bytes)} per GPU</div>")
    else:
        rec = '<div class="verdict oom" data-verdict="NO FIX"><b>No fix fits</b>see the options below</div>'
    return (
        '<section class="doctor"><ul class="notes">' + "".join(f"<li>{esc(r)}</li>" for r in read) + "</ul>"
        f"<h3>Your setup</h3>{estimate_section(ctx.estimate, show_charts=False)}"
        f"<h3>Prescription</h3>{rec}{options_html(report)}"
        f"<h3>Findings</h3>{findings_html(report)}"
        f"<h3>Charts</h3>{charts_html(charts)}</section>"
    )


def render_doctor_html(report: Any, charts: EstimateCharts | None = None) -> str:
    """The HTML report of ``vramplan doctor … --html``."""
    charts = charts or doctor_charts(report)
    data = {"kind": "doctor", "doctor": doctor_to_dict(report), "charts": charts_to_dict(charts)}
    name = report.context.scenario.model.name
    return render_page(f"vramplan doctor: {name}", doctor_section(report, charts), data)
