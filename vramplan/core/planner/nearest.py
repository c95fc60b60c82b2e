"""When nothing fits: the nearest ways out, each with its numbers.

In this order: offload setups that fit the GPUs but need more host RAM (how much); the training
method the user did not allow (LoRA, QLoRA: their best plan or how far they miss); more GPUs of the
same type; other GPU types (the smallest count that fits, ``sizing.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..hardware import GPUSpec
from ..scenario import Engine, Method, Offload, Scenario
from .result import NearestOption, PlanRequest, PlanResult, Rejection
from .search import search_plans
from .sizing import DEFAULT_GPUS_PER_NODE, DEFAULT_MAX_GPUS, size_cluster
from .space import allowed_methods


def _is_zero3_cpu_offload(scn: Scenario) -> bool:
    p = scn.parallel
    return (p.engine is Engine.DEEPSPEED and p.zero == 3 and p.offload_optimizer is Offload.CPU
            and p.offload_param is Offload.CPU and p.tp == p.pp == p.ep == 1)


def host_ram_options(result: PlanResult) -> list[NearestOption]:
    """Setups that fit the GPUs but not the host RAM (least host RAM first), and ZeRO-3 + CPU offload."""
    out: list[NearestOption] = []
    host = [r for r in result.rejected if r.kind == "host"]
    if host:
        best = min(host, key=lambda r: r.estimate.host_ram_bytes)
        out.append(NearestOption(kind="host_ram", rejection=best, host_ram_needed_bytes=best.estimate.host_ram_bytes))
    zero3: list[Rejection] = [r for r in result.rejected if _is_zero3_cpu_offload(r.scenario)]
    if zero3 and (not out or out[0].rejection is not zero3[0]):
        r = zero3[0]
        out.append(NearestOption(kind="host_ram", rejection=r, host_ram_needed_bytes=r.estimate.host_ram_bytes))
    return out


def nearest_options(
    start: Scenario,
    request: PlanRequest,
    result: PlanResult,
    alternatives: Sequence[GPUSpec] = (),
    max_gpus: int = DEFAULT_MAX_GPUS,
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
) -> tuple[NearestOption, ...]:
    """Nearest options for ``start`` when ``result`` has no plan (module docstring)."""
    out = host_ram_options(result)
    allowed = allowed_methods(start, request.methods)
    if not request.nvme:
        with_nvme = search_plans(start, replace(request, nvme=True, top=1))
        if with_nvme.plans:
            out.append(NearestOption(kind="nvme", plan=with_nvme.plans[0]))
    for method in (Method.LORA, Method.QLORA):
        if method in allowed:
            continue
        other = search_plans(start, replace(request, methods=(method,), top=1))
        out.append(NearestOption(kind="method", plan=other.plans[0] if other.plans else None,
                                 rejection=None if other.plans else (other.rejected[0] if other.rejected else None)))
    gpu = start.cluster.gpu
    for method in allowed:
        sizing = size_cluster(start, request, gpu, method, max_gpus, gpus_per_node)
        out.append(NearestOption(kind="more_gpus", sizing=sizing))
    for alt in alternatives:
        if alt.id == gpu.id:
            continue
        for method in allowed:
            out.append(NearestOption(kind="gpu_type", sizing=size_cluster(start, request, alt, method, max_gpus, gpus_per_node)))
    return tuple(out)
