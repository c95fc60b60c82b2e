"""PlanResult / Sizing / NearestOption -> terminal text for ``vramplan plan``."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.breakdown import HOST_KEYS, KEYS
from ..core.estimate import Estimate
from ..core.planner import NearestOption, Plan, PlanResult, Rejection, Sizing
from ..core.planner.changes import engine_label, method_label
from ..core.scenario import Engine, Method, Offload, Scenario
from ..core.steptime import StepTime
from .text import describe_setup
from .units import gib, gib_num

GROUPS = (("states", "model_states"), ("activ", "activations"), ("buffers", "buffers"), ("temps", "temporaries"),
          ("other", "overhead"))
"""Breakdown groups shown as plan-table columns (keys of core/breakdown.py)."""


def setup_label(scn: Scenario) -> str:
    """``DeepSpeed ZeRO-3 + offload opt+params cpu``, ``DeepSpeed ZeRO-1, pp=2``, ``FSDP full-shard, lora r=16``."""
    parts = [engine_label(scn)]
    p = scn.parallel
    opt = p.offload_optimizer.value if p.offload_optimizer is not Offload.NONE else ""
    param_offload = p.offload_param is not Offload.NONE and (p.engine is not Engine.DEEPSPEED or p.zero == 3)
    par = p.offload_param.value if param_offload else ""
    if opt and opt == par:
        parts[0] += f" + offload opt+params {opt}"
    elif opt or par:
        parts[0] += " + offload " + ", ".join(x for x in (opt and f"opt {opt}", par and f"params {par}") if x)
    parts += [f"{k}={v}" for k, v in (("tp", p.tp), ("pp", p.pp), ("ep", p.ep)) if v > 1]
    if scn.train.method in (Method.LORA, Method.QLORA):
        parts.append(method_label(scn))
    return ", ".join(parts)


def knobs_label(scn: Scenario) -> str:
    """``micro-batch 1 x accum 16, ckpt none, adamw-8bit, bf16-pure``."""
    t = scn.train
    return (f"micro-batch {t.micro_batch} x accum {t.grad_accum}, ckpt {t.grad_ckpt.value}, {t.optimizer.value}, "
            f"{t.precision.value}" + (", expandable_segments" if scn.parallel.expandable_segments else ""))


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def _tokens(value: float) -> str:
    return f"{value:,.0f}"


def largest_component(est: Estimate) -> tuple[str, int]:
    """(key, bytes) of the largest breakdown item at the peak."""
    bd = est.peak.breakdown
    key = max(KEYS, key=lambda k: bd[k])
    return key, bd[key]


def render_start(result: PlanResult) -> list[str]:
    """Header lines: hardware, batch, what the starting setup needs."""
    scn, est = result.start, result.start_estimate
    cl = scn.cluster
    host = f", host RAM {gib(cl.host_ram_bytes)} per node" if cl.host_ram_bytes is not None else ", host RAM not given"
    lines = [
        (f"vramplan plan: {scn.model.name} on {cl.world_size}x {cl.gpu.display_name} ({gib(est.capacity_bytes)}, "
        f"{gib(est.usable_bytes)} usable per GPU){host}"),
        (f"  global batch {result.global_batch} x seq {scn.train.seq_len}; searched {result.families} setups "
        f"({result.evaluated} memory estimates)"),
        "Starting setup: " + describe_setup(scn),
    ]
    if est.fits:
        lines.append(f"  -> fits: {gib(est.device_used_bytes)} per GPU, margin {gib(est.margin_bytes)}")
    elif not est.fits_gpu:
        key, value = largest_component(est)
        lines.append(f"  -> does not fit: needs {gib(est.device_used_bytes)} per GPU, over by {gib(-est.margin_bytes)} "
                     f"(largest: {key} {gib(value)})")
    else:
        lines.append(f"  -> does not fit: host RAM {gib(est.host_ram_bytes)} per node needed, "
                     f"{gib(cl.host_ram_bytes or 0)} available")
    return lines


def render_plan_table(plans: Sequence[Plan], show_changes: bool = True) -> list[str]:
    """The plan table: per-GPU device use with its main groups, margin, host RAM, step time, tokens/s."""
    head = (f" {'#':>2}  {'setup':<48}{'micro x accum':>14}  {'ckpt':<5}{'used':>7}"
            + "".join(f"{label:>8}" for label, _ in GROUPS)
            + f"{'margin':>8}{'host':>8}{'step':>9}{'tokens/s':>10}")
    lines = [head]
    for i, plan in enumerate(plans, start=1):
        scn, est, st = plan.scenario, plan.estimate, plan.step_time
        bd = est.peak.breakdown
        t = scn.train
        lines.append(
            f" {i:>2}  {setup_label(scn)[:47]:<48}{f'{t.micro_batch} x {t.grad_accum}':>14}  {t.grad_ckpt.value:<5}"
            f"{gib_num(est.device_used_bytes):>7}" + "".join(f"{gib_num(bd.group(g)):>8}" for _, g in GROUPS)
            + f"{gib_num(est.margin_bytes):>8}{gib_num(est.host_ram_bytes, 0):>8}{_seconds(st.total_s):>9}"
            f"{_tokens(st.tokens_per_s):>10}"
        )
        if show_changes:
            lines.append("      changes: " + ("; ".join(plan.changes) if plan.changes else "none (the starting setup fits)"))
            for note in plan.notes:
                lines.append(f"      needs: {note}" if not note.startswith(("global", "host")) else f"      note: {note}")
    lines.append("  (GiB per GPU at the peak phase; host = GiB of host RAM per node; step time and tokens/s from "
                 "the step-time model)")
    return lines


def render_rejection(rej: Rejection) -> str:
    """One line: which setup, GPU or host, over by how much, largest component."""
    label = f"{setup_label(rej.scenario)} ({knobs_label(rej.scenario)})"
    if rej.kind == "gpu":
        return (f"{label}: GPU over by {gib(rej.over_by_bytes)} (needs {gib(rej.estimate.device_used_bytes)}; "
                f"largest: {rej.component} {gib(rej.component_bytes)})")
    avail = rej.scenario.cluster.host_ram_bytes or 0
    return (f"{label}: fits the GPUs ({gib(rej.estimate.device_used_bytes)}) but needs {gib(rej.estimate.host_ram_bytes)} "
            f"host RAM per node, {gib(avail)} available (largest: {rej.component.split('/')[1]} "
            f"{gib(rej.component_bytes)})")


def _plan_summary(plan: Plan) -> str:
    st: StepTime = plan.step_time
    return (f"{setup_label(plan.scenario)}, {knobs_label(plan.scenario)}: {gib(plan.estimate.device_used_bytes)} per GPU, "
            f"{_seconds(st.total_s)}/step, {_tokens(st.tokens_per_s)} tokens/s")


def render_sizing(s: Sizing) -> str:
    """``RTX 4090, full: 24 GPUs (3 nodes x 8) - <plan summary>``."""
    name = f"{s.gpu.display_name}, {s.method.value}"
    if s.count is None or s.plan is None:
        return f"{name}: nothing fits up to {s.max_gpus} GPUs"
    cl = s.plan.scenario.cluster
    nodes = f" ({cl.nodes} nodes x {cl.gpus_per_node})" if cl.nodes > 1 else ""
    return f"{name}: {s.count} GPU{'s' if s.count > 1 else ''}{nodes} - {_plan_summary(s.plan)}"


def render_nearest(options: Sequence[NearestOption]) -> list[str]:
    """The nearest options when nothing fits, each with its numbers."""
    lines = ["Nearest options:"]
    for o in options:
        if o.kind == "host_ram" and o.rejection is not None:
            r = o.rejection
            if r.kind == "host":
                lines.append(f"  - more host RAM: {setup_label(r.scenario)} ({knobs_label(r.scenario)}) fits the GPUs "
                             f"({gib(r.estimate.device_used_bytes)} per GPU) but needs {gib(o.host_ram_needed_bytes or 0)} "
                             f"host RAM per node")
            else:
                lines.append(f"  - {setup_label(r.scenario)}: GPU over by {gib(r.over_by_bytes)} even with CPU offload; "
                             f"it would need {gib(o.host_ram_needed_bytes or 0)} host RAM per node")
        elif o.kind == "method":
            if o.plan is not None:
                lines.append(f"  - {method_label(o.plan.scenario)} (change of training method) fits: {_plan_summary(o.plan)}")
            elif o.rejection is not None:
                lines.append(f"  - {method_label(o.rejection.scenario)} does not fit either: {render_rejection(o.rejection)}")
        elif o.kind == "nvme" and o.plan is not None:
            lines.append(f"  - with an NVMe drive (search it with --nvme): {_plan_summary(o.plan)}; "
                         f"{gib(o.plan.estimate.host_ram_bytes)} host RAM per node")
        elif o.kind in ("more_gpus", "gpu_type") and o.sizing is not None:
            prefix = "more GPUs of this type" if o.kind == "more_gpus" else "another GPU type"
            lines.append(f"  - {prefix}: {render_sizing(o.sizing)}")
    return lines


def render_plan_result(result: PlanResult, nearest: Sequence[NearestOption] = (), rejected_shown: int = 5) -> str:
    """The full text output of ``vramplan plan``."""
    lines = render_start(result)
    lines.append("")
    if result.plans:
        lines.append(f"Plans that fit (best {len(result.plans)} shown, fastest first):")
        lines += render_plan_table(result.plans)
    else:
        cl = result.start.cluster
        host = (f" with {gib(cl.host_ram_bytes)} host RAM per node" if cl.host_ram_bytes is not None else "")
        methods = ", ".join(sorted({r.scenario.train.method.value for r in result.rejected})) or "the given method"
        lines.append(f"No plan fits: {result.start.model.name} ({methods}) on {cl.world_size}x {cl.gpu.display_name}{host}, "
                     f"global batch {result.global_batch}.")
        if nearest:
            lines += render_nearest(nearest)
    if result.rejected:
        lines.append("")
        lines.append("Closest setups that do not fit:")
        for rej in result.rejected[:rejected_shown]:
            lines.append("  - " + render_rejection(rej))
    lines.append("")
    lines.append("Assumptions:")
    lines += [f"  - {a}" for a in result.assumptions]
    for note in result.notes:
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def render_sizing_table(rows: Sequence[Sizing], global_batch: int, seq_len: int) -> str:
    """``--gpu-type`` / ``--compare``: the smallest GPU count per type and method."""
    lines = [(f"GPUs needed (global batch {global_batch} x seq {seq_len}; smallest count with a plan that fits, "
             "starting optimizer and precision kept):")]
    lines.append(f"  {'GPU':<32}{'method':<8}{'GPUs':>6}  {'best setup at that count':<60}{'used':>7}{'step':>9}{'tokens/s':>10}")
    for s in rows:
        if s.count is None or s.plan is None:
            lines.append(f"  {s.gpu.display_name[:31]:<32}{s.method.value:<8}{'-':>6}  nothing fits up to {s.max_gpus} GPUs")
            continue
        p = s.plan
        label = f"{setup_label(p.scenario)}, mb {p.scenario.train.micro_batch} x {p.scenario.train.grad_accum}"
        lines.append(f"  {s.gpu.display_name[:31]:<32}{s.method.value:<8}{s.count:>6}  {label[:59]:<60}"
                     f"{gib_num(p.estimate.device_used_bytes):>7}{_seconds(p.step_time.total_s):>9}"
                     f"{_tokens(p.step_time.tokens_per_s):>10}")
        changes = [c for c in p.changes if not c.startswith("GPUs ")]
        if changes:
            lines.append(f"  {'':<46}changes: {'; '.join(changes)}")
    return "\n".join(lines)


def emit_header(est: Estimate, step: StepTime | None) -> list[str]:
    """Comment lines for an emitted launch script: setup, expected memory, step time."""
    scn = est.scenario
    lines = [f"Setup: {describe_setup(scn)}",
             (f"Expected per GPU: {gib(est.device_used_bytes)} (nvidia-smi, {est.peak_phase} peak) of {gib(est.usable_bytes)} "
             f"usable on {scn.cluster.gpu.display_name}; host RAM {gib(est.host_ram_bytes)} per node")]
    host_items = [f"{k.split('/')[1]} {gib_num(est.host.get(k, 0))}" for k in HOST_KEYS if est.host.get(k)]
    if host_items:
        lines.append("Host RAM items (GiB): " + ", ".join(host_items))
    if step is not None:
        lines.append(f"Estimated step time {_seconds(step.total_s)}, {_tokens(step.tokens_per_s)} tokens/s (step-time model)")
    if not est.fits:
        lines.append("WARNING: this setup does NOT fit according to vramplan's estimate")
    return lines
