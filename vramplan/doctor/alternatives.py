"""Honest alternatives when nothing that keeps full fine-tuning on the user's GPUs fits.

- LoRA / QLoRA on the same GPUs (a change of method), each with the cheapest fitting combination of the
  ordinary fixes on top (or the closest one);
- more GPUs of the same type, and bigger GPUs from the catalog: the smallest GPU count (1-8 per node,
  then whole 8-GPU nodes) at which the configured run, or it with the best fixes found, fits. Host RAM
  per node stays what was given, or is assumed again for the new node (2x its GPU memory). The global
  batch is kept as closely as whole gradient-accumulation steps allow.
Pure: catalog reads go through ``vramplan.registry``; every number comes from the estimator.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..core.errors import VramplanError
from ..core.estimate import estimate_scenario
from ..core.hardware import GPUSpec
from ..core.model import Part
from ..core.scenario import Engine, LoraSpec, Method, Scenario
from .candidates import fix_candidates
from .prescribe import Evaluator, Option, Prescription, search
from .types import Change, DoctorContext

LAYOUTS: tuple[tuple[int, int], ...] = tuple((1, n) for n in range(1, 9)) + tuple((k, 8) for k in (2, 3, 4, 6, 8, 12, 16))
"""(nodes, GPUs per node), smallest first; up to 128 GPUs."""
BIGGER_GPUS = ("a6000", "l40s", "a100-40g", "a100-80g", "h100-80g", "h200")
ALTERNATIVE_LORA_R = 64
"""MGM's and LLaVA's train.py default lora_r."""
ASSUMED_HOST_RAM_PER_GPU_FACTOR = 2


def assumed_host_ram(gpu: GPUSpec, gpus_per_node: int) -> int:
    """Host RAM assumed for a node when the user gives none: twice its GPU memory (a common sizing rule)."""
    return ASSUMED_HOST_RAM_PER_GPU_FACTOR * gpu.memory_bytes * gpus_per_node


def _with_method(scn: Scenario, method: Method, r: int) -> Scenario:
    trainable = scn.train.trainable if Part.LLM in scn.train.trainable else (Part.LLM, *scn.train.trainable)
    lora = scn.train.lora if scn.train.method in (Method.LORA, Method.QLORA) else LoraSpec(r=r, alpha=2 * r, targets=("all-linear",))
    return replace(scn, train=replace(scn.train, method=method, lora=lora, trainable=trainable))


def method_alternative(ctx: DoctorContext, method: Method) -> Option:
    """LoRA or QLoRA on the user's GPUs, with the cheapest ordinary fixes that make it fit (or the closest)."""
    base = _with_method(ctx.scenario, method, ALTERNATIVE_LORA_R)
    base_est = estimate_scenario(base)
    r = base.train.lora.r
    changes: tuple[Change, ...] = (Change("script", "lora_enable", "True"), Change("script", "lora_r", str(r)),
                                   Change("script", "lora_alpha", str(base.train.lora.alpha)))
    if method is Method.QLORA:
        changes += (Change("script", "bits", "4"),)
    title = f"{'QLoRA (4-bit base)' if method is Method.QLORA else 'LoRA'} r={r}"
    sub_ctx = replace(ctx, scenario=base, estimate=base_est)
    ev = Evaluator(base, ctx.estimate, fix_candidates(sub_ctx), kind=method.value, extra_changes=changes,
                   extra_title=title, extra_cost=60 if method is Method.LORA else 70)
    as_is = ev.evaluate([])
    assert as_is is not None
    if as_is.fits:
        return as_is
    singles, combos = search(ev, max_combo=2, keep=3)
    ranked = sorted([*singles, *combos], key=Option.rank_key)
    fitting = [o for o in ranked if o.fits]
    return fitting[0] if fitting else min([as_is, *ranked], key=lambda o: o.peak_bytes)


def _on_hardware(scn: Scenario, gpu: GPUSpec, nodes: int, per_node: int, host_ram: int | None, assumed: bool) -> Scenario:
    world = nodes * per_node
    ram = assumed_host_ram(gpu, per_node) if assumed else host_ram
    cluster = replace(scn.cluster, gpu=gpu, gpus_per_node=per_node, nodes=nodes, host_ram_bytes=ram)
    par = scn.parallel
    if world == 1 and par.engine is Engine.DDP:
        par = replace(par, engine=Engine.SINGLE)
    return replace(scn, cluster=cluster, parallel=par)


OFFLOAD_IDS = ("offload_optimizer", "offload_param")


def _fix_sets(ctx: DoctorContext, prescription: Prescription) -> list[tuple[str, ...]]:
    """Fix sets tried on new hardware, least change first: none, each single fix, the closest options found.

    Offload is left out: more GPUs are the alternative to it (and its host RAM depends on the node)."""
    costs = {c.id: c.cost for c in fix_candidates(ctx)}
    sets: list[tuple[str, ...]] = [()] + [(i,) for i in costs]
    for option in sorted(prescription.ranked, key=lambda o: o.peak_bytes)[:3]:
        sets.append(option.ids)
    unique = [ids for ids in dict.fromkeys(sets) if not any(i in OFFLOAD_IDS for i in ids)]
    return sorted(unique, key=lambda ids: sum(costs.get(i, 0) for i in ids))


def _option_at(ctx: DoctorContext, gpu: GPUSpec, layout: tuple[int, int], ids: tuple[str, ...], kind: str) -> Option | None:
    """The run with fix set ``ids`` on ``layout`` (None when the layout or a fix does not apply)."""
    nodes, per_node = layout
    try:
        base = _on_hardware(ctx.scenario, gpu, nodes, per_node, ctx.scenario.cluster.host_ram_bytes, ctx.host_ram_assumed)
        sub_ctx = replace(ctx, scenario=base, estimate=estimate_scenario(base))
    except VramplanError:  # a layout the scenario rejects (tp/pp/ep degrees) is skipped
        return None
    cands = {c.id: c for c in fix_candidates(sub_ctx)}
    if any(i not in cands for i in ids):
        return None
    hw = f"{nodes} nodes x {per_node} {gpu.display_name}" if nodes > 1 else f"{per_node}x {gpu.display_name}"
    ev = Evaluator(base, ctx.estimate, list(cands.values()), kind=kind, extra_title=hw,
                   extra_cost=80 if kind == "more_gpus" else 90)
    option = ev.evaluate([cands[i] for i in ids])
    if option is None:
        return None
    old = ctx.scenario.train
    old_global = old.micro_batch * old.grad_accum * ctx.scenario.dp_degree
    scn = option.scenario
    ga = max(1, round(old_global / (scn.train.micro_batch * scn.dp_degree)))
    if ga != scn.train.grad_accum:  # keep the user's global batch as closely as whole accumulation steps allow
        scn = replace(scn, train=replace(scn.train, grad_accum=ga))
        est = estimate_scenario(scn)
        option = replace(option, scenario=scn, estimate=est,
                         saved_bytes=ctx.estimate.device_used_bytes - est.device_used_bytes)
    changes = tuple(c for c in option.changes if c.key != "gradient_accumulation_steps")
    extra: tuple[Change, ...] = (Change("hardware", "gpus", hw),)
    if ga != old.grad_accum:
        extra += (Change("script", "gradient_accumulation_steps", str(ga)),)
    new_global = scn.train.micro_batch * ga * scn.dp_degree
    notes = option.notes + (f"gradient accumulation {ga}: global batch {new_global}"
                            + ("" if new_global == old_global else f" (was {old_global})"),)
    title = re.sub(r" with gradient accumulation \d+->\d+| \(global batch \d+ kept\)", "", option.title)
    return replace(option, title=title, hardware=hw, changes=extra + changes, notes=notes)


def hardware_alternative(ctx: DoctorContext, prescription: Prescription, gpu: GPUSpec, kind: str) -> Option | None:
    """The fewest GPUs of ``gpu`` (LAYOUTS order, up to 128) on which the run fits, as configured or with one of
    ``_fix_sets``; among equal counts the least change wins."""
    scn = ctx.scenario
    start = scn.cluster.world_size if gpu.id == scn.cluster.gpu.id else 0
    layouts = [(n, g) for n, g in LAYOUTS if n * g > start]
    best: Option | None = None
    best_index = len(layouts)
    for ids in _fix_sets(ctx, prescription):
        hi = best_index - 1  # only a strictly smaller count can beat what was found with less change
        if hi < 0:
            break
        top = _option_at(ctx, gpu, layouts[hi], ids, kind)
        if top is None or not top.fits:
            continue
        found, lo = top, 0
        while lo < hi:  # memory per GPU does not grow with the GPU count: binary search the first fit
            mid = (lo + hi) // 2
            option = _option_at(ctx, gpu, layouts[mid], ids, kind)
            if option is not None and option.fits:
                found, hi = option, mid
            else:
                lo = mid + 1
        best, best_index = found, hi
    return best


def alternatives(ctx: DoctorContext, prescription: Prescription) -> list[Option]:
    """LoRA, QLoRA, more GPUs of the same type, bigger GPUs (module docstring)."""
    from ..registry import load_gpu

    out: list[Option] = []
    scn = ctx.scenario
    if scn.train.method is not Method.QLORA:
        if scn.train.method is not Method.LORA:
            out.append(method_alternative(ctx, Method.LORA))
        out.append(method_alternative(ctx, Method.QLORA))
    same = hardware_alternative(ctx, prescription, scn.cluster.gpu, "more_gpus")
    if same is not None:
        out.append(same)
    for gpu_id in BIGGER_GPUS:
        gpu = load_gpu(gpu_id)
        if gpu.memory_bytes <= scn.cluster.gpu.memory_bytes:
            continue
        option = hardware_alternative(ctx, prescription, gpu, "bigger_gpus")
        if option is not None:
            out.append(option)
    return out
