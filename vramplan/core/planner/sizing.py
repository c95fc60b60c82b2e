"""Cluster sizing: the smallest number of GPUs of a type on which some plan fits, per training method.

Counts tried: 1 .. ``gpus_per_node`` on one node, then whole nodes of ``gpus_per_node`` GPUs. The
smallest feasible count is found by binary search, which assumes that adding GPUs never makes a
setup stop fitting: per-GPU model states shrink (or stay) as ZeRO-3/FSDP shards widen, the
per-rank batch shrinks at a fixed global batch, and host RAM is per node. The count found is always
checked by a real search. Only the mainstream families (no tp/pp/ep, no NVMe) are used for sizing, and
the starting optimizer and precision are kept (no 8-bit AdamW / Adafactor / pure bf16), so that the
count does not hinge on a change of numerics.
"""

from __future__ import annotations

from dataclasses import replace

from ..hardware import GPUSpec
from ..scenario import Engine, Method, Scenario
from ..units import ceil_div
from .changes import describe_changes
from .result import Plan, PlanRequest, Sizing
from .search import Searcher, search_plans, start_global_batch

DEFAULT_MAX_GPUS = 256
DEFAULT_GPUS_PER_NODE = 8


def count_options(max_gpus: int, gpus_per_node: int) -> list[int]:
    """GPU counts to try: 1..gpus_per_node, then whole nodes."""
    out = list(range(1, min(max_gpus, gpus_per_node) + 1))
    n = 2 * gpus_per_node
    while n <= max_gpus:
        out.append(n)
        n += gpus_per_node
    return out


def rehost(start: Scenario, gpu: GPUSpec, count: int, gpus_per_node: int = DEFAULT_GPUS_PER_NODE) -> Scenario:
    """``start`` moved to ``count`` GPUs of type ``gpu`` (tp = pp = ep = 1; engine adjusted to the count)."""
    per_node = min(count, gpus_per_node)
    nodes = ceil_div(count, per_node)
    cluster = replace(start.cluster, gpu=gpu, gpus_per_node=per_node, nodes=nodes)
    par = start.parallel
    engine = par.engine
    if count == 1 and engine is not Engine.DEEPSPEED:
        engine = Engine.SINGLE
    elif count > 1 and engine is Engine.SINGLE:
        engine = Engine.DDP
    return replace(start, cluster=cluster, parallel=replace(par, engine=engine, tp=1, pp=1, ep=1))


def size_cluster(
    start: Scenario,
    request: PlanRequest,
    gpu: GPUSpec,
    method: Method,
    max_gpus: int = DEFAULT_MAX_GPUS,
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
) -> Sizing:
    """Smallest GPU count of ``gpu`` with a plan for ``method`` (module docstring), and its best plan."""
    req = replace(request, methods=(method,), model_parallel=False, nvme=False, top=1, optimizer_changes=False,
                  global_batch=request.global_batch or start_global_batch(start))
    options = count_options(max_gpus, gpus_per_node)

    def feasible(count: int) -> bool:
        return Searcher(rehost(start, gpu, count, gpus_per_node), req).first_fit() is not None

    if not feasible(options[-1]):
        return Sizing(gpu=gpu, method=method, count=None, plan=None, max_gpus=max_gpus)
    lo, hi = 0, len(options) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if feasible(options[mid]):
            hi = mid
        else:
            lo = mid + 1
    count = options[lo]
    result = search_plans(rehost(start, gpu, count, gpus_per_node), req)
    plan = None
    if result.plans:
        best = result.plans[0]
        plan = Plan(scenario=best.scenario, estimate=best.estimate, step_time=best.step_time,
                    changes=describe_changes(start, best.scenario), notes=best.notes)
    return Sizing(gpu=gpu, method=method, count=count if plan else None, plan=plan, max_gpus=max_gpus)
