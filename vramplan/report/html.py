"""Self-contained HTML reports: inline CSS, charts as inline SVG, the data embedded as JSON, no fetches.

Owns the page frame (``render_page``) and the estimate section; ``html_plan.py`` and ``html_doctor.py``
add the plan and doctor sections with the same helpers. Sections are HTML fragments, reused by the local
web page (``vramplan serve``). Every user-visible string is escaped; bytes become GiB here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from .. import __version__
from ..core.breakdown import HOST_KEYS, KEYS
from ..core.estimate import Estimate
from .charts import KEY_COLORS, EstimateCharts, charts_to_dict, estimate_charts
from .json_report import estimate_to_dict
from .svg import render_chart_svg
from .text import describe_setup
from .units import gib, gib_num, params

CSS = """
:root{--fit:#1a7f37;--oom:#c00000;--ink:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);margin:0;background:#fff}
main{max-width:1100px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
.sub{color:var(--muted);margin:0 0 14px}.setup{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;
background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:6px 10px;overflow-x:auto}
.verdict{border-radius:8px;padding:12px 16px;margin:12px 0;font-size:16px;border:1px solid}
.verdict.fits{background:#dafbe1;border-color:#4ac26b;color:#0f5323}.verdict.oom{background:#ffebe9;border-color:#ff8182;color:#82071e}
.verdict b{font-size:20px;margin-right:8px}
table{border-collapse:collapse;margin:6px 0 10px;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:left;vertical-align:top}
td.num,th.num{text-align:right}th{background:var(--bg);font-weight:600}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:12px}
.charts figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:6px;overflow-x:auto}
.vp-chart{max-width:100%;height:auto}
.notes li{margin:2px 0}.tag{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;border:1px solid var(--line)}
.tag.fits{color:var(--fit);border-color:#4ac26b}.tag.oom{color:var(--oom);border-color:#ff8182}
.sev-error{color:var(--oom);font-weight:600}.sev-warning{color:#9a6700;font-weight:600}.sev-info{color:var(--muted)}
footer{color:var(--muted);font-size:12px;margin-top:32px}
"""


def esc(value: object) -> str:
    """Escape any value for HTML text or attributes."""
    return escape(str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (), cls: str = "") -> str:
    """An HTML table; cells are already-escaped HTML; ``numeric`` column indexes are right-aligned."""
    head = "".join(f'<th class="num">{h}</th>' if i in numeric else f"<th>{h}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    c = f' class="{cls}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def verdict_html(est: Estimate) -> str:
    """The FITS / OOM banner with the numbers behind it."""
    if est.fits:
        text = (f"peak {gib(est.device_used_bytes)} per GPU at the {esc(est.peak_phase)} phase, usable "
                f"{gib(est.usable_bytes)}, margin {gib(est.margin_bytes)}")
        return f'<div class="verdict fits" data-verdict="FITS"><b>FITS</b>{text}</div>'
    if est.fits_gpu:
        ram = est.scenario.cluster.host_ram_bytes or 0
        text = f"GPU fits, but host RAM needs {gib(est.host_ram_bytes)} per node of {gib(ram)}"
    else:
        text = (f"needs {gib(est.device_used_bytes)} per GPU at the {esc(est.peak_phase)} peak, usable "
                f"{gib(est.usable_bytes)} &rarr; over by {gib(-est.margin_bytes)}")
    return f'<div class="verdict oom" data-verdict="OOM"><b>OOM</b>{text}</div>'


def breakdown_table(est: Estimate) -> str:
    """Every non-zero breakdown key at the peak, with GiB and share."""
    peak = est.peak.breakdown
    total = peak.device_used_bytes or 1
    rows = [
        (f'<span class="swatch" style="background:{KEY_COLORS[k]}"></span><code>{esc(k)}</code>',
         gib_num(peak[k]), f"{100 * peak[k] / total:.1f}%")
        for k in KEYS if peak[k]
    ]
    rows.append(("<b>total (device used)</b>", f"<b>{gib_num(peak.device_used_bytes)}</b>", "100%"))
    return table(["key", "GiB per GPU", "share"], rows, numeric=(1, 2), cls="breakdown")


def phases_table(est: Estimate) -> str:
    """allocated / reserved / device used per phase."""
    rows = [
        (label, *(gib_num(getattr(p, attr)) for p in est.phases))
        for label, attr in (("allocated (max_memory_allocated)", "allocated_bytes"),
                            ("reserved (max_memory_reserved)", "reserved_bytes"),
                            ("device used (nvidia-smi)", "device_used_bytes"))
    ]
    return table(["GiB per GPU", *(esc(p.phase) for p in est.phases)], rows, numeric=(1, 2, 3))


def charts_html(charts: EstimateCharts, names: Sequence[str] = ("breakdown", "phases", "micro_batch", "seq_len")) -> str:
    """The charts as inline SVG figures."""
    figs = "".join(f'<figure data-chart-name="{esc(n)}">{render_chart_svg(getattr(charts, n))}</figure>' for n in names)
    return f'<div class="charts">{figs}</div>'


def estimate_section(est: Estimate, charts: EstimateCharts | None = None, show_charts: bool = True) -> str:
    """Verdict, setup, per-phase table, breakdown, host RAM, notes and (``show_charts``) charts of one estimate."""
    scn = est.scenario
    gpu = scn.cluster.gpu
    if show_charts and charts is None:
        charts = estimate_charts(est)
    p = est.params
    host = [f"{esc(k.split('/')[1])} {gib_num(est.host[k])}" for k in HOST_KEYS if est.host.get(k)]
    avail = scn.cluster.host_ram_bytes
    host_line = f"Host RAM per node: {gib(est.host_ram_bytes)}" + (f" of {gib(avail)}" if avail is not None else "")
    notes = "".join(f"<li>{esc(n)}</li>" for n in est.notes)
    return (
        f'<section class="estimate"><p class="sub">{esc(scn.model.name)} on {scn.cluster.world_size}&times; '
        f"{esc(gpu.display_name)} ({gib(est.capacity_bytes)} each)</p>"
        f'<div class="setup">{esc(describe_setup(scn))}</div>{verdict_html(est)}'
        f"<p>Parameters: {params(p.total)} total ({params(p.active)} active), {params(p.trainable)} trainable, "
        f"{params(p.frozen)} frozen. {host_line}" + (f" ({', '.join(host)})" if host else "") + ".</p>"
        f"<h3>Per phase</h3>{phases_table(est)}"
        f"<h3>Breakdown at the peak ({esc(est.peak_phase)})</h3>{breakdown_table(est)}"
        + (f'<h3>Notes</h3><ul class="notes">{notes}</ul>' if notes else "")
        + (f"<h3>Charts</h3>{charts_html(charts)}" if show_charts and charts is not None else "")
        + "</section>"
    )


def _json_script(data: Any) -> str:
    text = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    return f'<script type="application/json" id="vramplan-data">{text}</script>'


def render_page(title: str, body: str, data: Any) -> str:
    """A complete self-contained HTML document with ``data`` embedded as JSON."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{esc(title)}</h1>{body}"
        f"<footer>vramplan {esc(__version__)} &middot; analytical estimate; every number is per GPU on the most "
        f"loaded rank, in GiB (1024&sup3; bytes). The data behind this page is embedded below as JSON "
        f"(bytes as integers).</footer></main>{_json_script(data)}</body></html>\n"
    )


def render_estimate_html(est: Estimate, model_ref: str | None = None, charts: EstimateCharts | None = None) -> str:
    """The HTML report of ``vramplan estimate … --html``."""
    charts = charts or estimate_charts(est)
    data = {"kind": "estimate", "estimate": estimate_to_dict(est, model_ref), "charts": charts_to_dict(charts)}
    return render_page(f"vramplan estimate: {est.scenario.model.name}", estimate_section(est, charts), data)
