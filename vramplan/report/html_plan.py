"""HTML for ``vramplan plan``: the ranked plans, the strongest rejections, the nearest options, the charts.

Fragments built with the helpers of ``html.py``; ``render_plan_html`` wraps them into a self-contained
page with the data embedded as JSON. Bytes become GiB here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .charts import EstimateCharts, chart_to_dict, charts_to_dict, plan_charts, sizing_chart
from .html import charts_html, esc, estimate_section, render_page, table, verdict_html
from .plan_json import plan_result_to_dict, sizing_result_to_dict
from .plan_text import setup_label
from .svg import render_chart_svg
from .text import describe_setup
from .units import gib_num


def _changes(changes: Sequence[str]) -> str:
    if not changes:
        return "<i>as given</i>"
    return "<br>".join(esc(c) for c in changes)


def plans_table(result: Any, top: int | None = None) -> str:
    """Ranked plans: setup, what changed, peak and margin per GPU, step time, tokens/s."""
    rows = []
    for i, plan in enumerate(result.plans[:top] if top else result.plans, start=1):
        est, st = plan.estimate, plan.step_time
        method = ' <span class="tag oom">method change</span>' if plan.changes_method else ""
        rows.append((
            f'<span class="rank">{i}</span>',
            f'<span class="setup-cell">{esc(describe_setup(plan.scenario))}</span>{method}',
            _changes(plan.changes),
            gib_num(est.device_used_bytes),
            gib_num(est.margin_bytes),
            f"{st.total_s:.2f}",
            f"{st.tokens_per_s:,.0f}",
        ))
    if not rows:
        return '<p class="none">No setup fits these GPUs.</p>'
    return table(["#", "setup", "changes from your setup", "peak GiB", "margin GiB", "step s", "tokens/s"], rows,
                 numeric=(3, 4, 5, 6), cls="plans")


def rejected_table(result: Any, limit: int = 5) -> str:
    """The rejected setups that came closest, with the component that did not fit."""
    rows = [
        (_changes(r.changes), esc(r.kind), f"<code>{esc(r.component)}</code> {gib_num(r.component_bytes)}",
         gib_num(r.over_by_bytes))
        for r in result.rejected[:limit]
    ]
    if not rows:
        return ""
    return "<h3>Closest rejected setups</h3>" + table(
        ["changes", "limit", "largest component (GiB)", "over by GiB"], rows, numeric=(3,), cls="rejected")


def nearest_html(options: Sequence[Any]) -> str:
    """When nothing fits: each nearest option with its numbers."""
    items = []
    for o in options:
        if o.kind == "host_ram" and o.host_ram_needed_bytes:
            items.append(f"host RAM: the offloaded setup fits the GPUs with {gib_num(o.host_ram_needed_bytes)} GiB "
                         "of host RAM per node")
        elif o.sizing is not None:
            s = o.sizing
            what = f"{s.count}&times; {esc(s.gpu.display_name)}" if s.count else f"nothing up to {s.max_gpus} GPUs"
            items.append(f"{esc(o.kind.replace('_', ' '))} ({esc(s.method.value)}): {what}")
        elif o.plan is not None:
            items.append(f"{esc(o.kind)}: {esc(describe_setup(o.plan.scenario))} &mdash; peak "
                         f"{gib_num(o.plan.estimate.device_used_bytes)} GiB per GPU")
        elif o.rejection is not None:
            items.append(f"{esc(o.kind)}: closest is over by {gib_num(o.rejection.over_by_bytes)} GiB")
    if not items:
        return ""
    return "<h3>Nearest options</h3><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def plan_section(result: Any, charts: EstimateCharts | None = None, nearest: Sequence[Any] = (),
                 top: int | None = None) -> str:
    """Verdict of the search, your setup, the plans, rejections, nearest options, assumptions, charts."""
    charts = charts or plan_charts(result)
    n = len(result.plans)
    if n:
        head = (f'<div class="verdict fits" data-verdict="PLANS"><b>{n} plan{"s" if n != 1 else ""} fit</b>'
                f"global batch {result.global_batch}; best: peak {gib_num(result.plans[0].estimate.device_used_bytes)} "
                f"GiB per GPU, {result.plans[0].step_time.total_s:.2f} s per step</div>")
    else:
        head = ('<div class="verdict oom" data-verdict="NO PLAN"><b>No plan fits</b>'
                f"{result.evaluated} setups estimated in {result.families} families</div>")
    notes = [*result.notes, *result.assumptions]
    return (
        f'<section class="plan">{head}'
        f"<h3>Your setup</h3>{verdict_html(result.start_estimate)}"
        f'<div class="setup">{esc(describe_setup(result.start))}</div>'
        f"<h3>Ranked plans</h3>{plans_table(result, top)}{rejected_table(result)}{nearest_html(nearest)}"
        + ("<h3>Assumptions</h3><ul class=\"notes\">" + "".join(f"<li>{esc(a)}</li>" for a in notes) + "</ul>"
           if notes else "")
        + f"<h3>Charts</h3>{charts_html(charts)}</section>"
    )


def sizing_section(rows: Sequence[Any], global_batch: int, seq_len: int) -> str:
    """``--gpu-type`` / ``--compare``: the smallest GPU count per type and method, its best setup, and a chart
    of that setup's per-GPU memory against each GPU's capacity."""
    cells = []
    for s in rows:
        if s.count is None or s.plan is None:
            cells.append((esc(s.gpu.display_name), esc(s.method.value), "&ndash;",
                          f"nothing fits up to {s.max_gpus} GPUs", "", "", ""))
            continue
        p = s.plan
        changes = [c for c in p.changes if not c.startswith("GPUs ")]
        setup = esc(f"{setup_label(p.scenario)}, mb {p.scenario.train.micro_batch} x {p.scenario.train.grad_accum}")
        if changes:
            setup += "<br><small>" + "; ".join(esc(c) for c in changes) + "</small>"
        cells.append((esc(s.gpu.display_name), esc(s.method.value), str(s.count), setup,
                      gib_num(p.estimate.device_used_bytes), f"{p.step_time.total_s:.2f}",
                      f"{p.step_time.tokens_per_s:,.0f}"))
    chart = sizing_chart(rows)
    figure = (f'<div class="charts"><figure data-chart-name="sizing">{render_chart_svg(chart)}</figure></div>'
              if chart.bars else "")
    return (f'<section class="sizing"><h3>GPUs needed</h3><p>Global batch {global_batch} &times; seq {seq_len}; '
            "the smallest count with a plan that fits, starting optimizer and precision kept.</p>"
            + table(["GPU", "method", "GPUs", "best setup at that count", "peak GiB", "step s", "tokens/s"], cells,
                    numeric=(2, 4, 5, 6), cls="sizing")
            + figure + "</section>")


def render_sizing_html(rows: Sequence[Any], global_batch: int, start: Any, model_ref: str | None = None) -> str:
    """The HTML report of ``vramplan plan … --gpu-type T`` / ``--compare a,b`` (sizing without a cluster)."""
    data = {"kind": "sizing", "plan": sizing_result_to_dict(rows, global_batch, model_ref),
            "charts": {"sizing": chart_to_dict(sizing_chart(rows))}}
    body = (f'<div class="setup">{esc(describe_setup(start))}</div>'
            + sizing_section(rows, global_batch, start.train.seq_len))
    return render_page(f"vramplan plan: GPUs needed for {start.model.name}", body, data)


def render_plan_html(result: Any, model_ref: str | None = None, nearest: Sequence[Any] = (),
                     charts: EstimateCharts | None = None, sizing: Sequence[Any] = ()) -> str:
    """The HTML report of ``vramplan plan … --html`` (with ``--compare``: the sizing table too)."""
    charts = charts or plan_charts(result)
    data = {"kind": "plan", "plan": plan_result_to_dict(result, model_ref, nearest, sizing),
            "charts": charts_to_dict(charts)}
    if sizing:
        data["charts"]["sizing"] = chart_to_dict(sizing_chart(sizing))
    body = plan_section(result, charts, nearest)
    if sizing:
        body += sizing_section(sizing, result.global_batch, result.start.train.seq_len)
    if result.plans:
        body += "<h2>Best plan in detail</h2>" + estimate_section(result.plans[0].estimate, show_charts=False)
    return render_page(f"vramplan plan: {result.start.model.name}", body, data)

