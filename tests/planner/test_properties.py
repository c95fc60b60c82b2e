"""Planner invariants (hypothesis): soundness, monotonicity in GPU memory, ZeRO-3 sharding."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_scenario
from vramplan.core.estimate import estimate_scenario
from vramplan.core.planner import Plan, PlanRequest, search_plans
from vramplan.core.scenario import Engine, Method
from vramplan.registry import parse_gpus

MODELS = ["mgm-2b", "llama-3.1-8b", "qwen2.5-7b", "mixtral-8x7b", "olmoe-1b-7b", "gemma-2b"]
GPUS = ["rtx4090", "a100-40g", "a100-80g", "l40s", "24GiB", "v100-32g"]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scenario(model: str, gpu: str, count: int, seq: int, host_gb: int | None, nodes: int = 1) -> Any:
    hw: dict[str, Any] = {"gpu": gpu, "gpus_per_node": count, "nodes": nodes}
    if host_gb is not None:
        hw["host_ram_gb"] = host_gb
    engine = "single" if count * nodes == 1 else "deepspeed"
    return make_scenario({"model": model, "hardware": hw, "train": {"seq_len": seq}, "parallel": {"engine": engine}})


def family_key(plan: Plan) -> tuple[Any, ...]:
    p = plan.scenario.parallel
    return (p.engine, p.zero if p.engine is Engine.DEEPSPEED else None, p.offload_optimizer, p.offload_param,
            p.fsdp_sharding if p.engine in (Engine.FSDP, Engine.FSDP2) else None, p.tp, p.pp, p.ep,
            plan.scenario.train.method)


@SETTINGS
@given(
    model=st.sampled_from(MODELS), gpu=st.sampled_from(GPUS), count=st.integers(1, 8),
    seq=st.sampled_from([512, 1024, 2048, 4096]), global_batch=st.integers(1, 64),
    host=st.sampled_from([None, 64, 256, 1024]), any_method=st.booleans(),
)
def test_every_returned_plan_fits(model: str, gpu: str, count: int, seq: int, global_batch: int,
                                  host: int | None, any_method: bool) -> None:
    start = scenario(model, gpu, count, seq, host)
    methods = (Method.FULL, Method.LORA, Method.QLORA) if any_method else ()
    result = search_plans(start, PlanRequest(global_batch=global_batch, methods=methods))
    for plan in result.plans:
        again = estimate_scenario(plan.scenario)
        assert again.fits and plan.estimate.fits, plan.changes
        assert again.margin_bytes >= 0
        if host is not None:
            assert again.fits_host
        if not any_method:
            assert plan.scenario.train.method is start.train.method
    for rej in result.rejected:
        assert not rej.estimate.fits and rej.over_by_bytes > 0


@SETTINGS
@given(
    model=st.sampled_from(MODELS), count=st.integers(1, 8), seq=st.sampled_from([512, 2048, 4096]),
    global_batch=st.integers(1, 32), host=st.sampled_from([None, 128, 512]),
)
def test_more_memory_per_gpu_never_removes_a_feasible_plan(model: str, count: int, seq: int, global_batch: int,
                                                           host: int | None) -> None:
    small = scenario(model, "24GiB", count, seq, host)
    big = replace(small, cluster=replace(small.cluster, gpu=parse_gpus("32GiB")[0]))
    request = PlanRequest(global_batch=global_batch)
    plans_small = search_plans(small, request).plans
    plans_big = search_plans(big, request).plans
    assert {family_key(p) for p in plans_small} <= {family_key(p) for p in plans_big}
    for plan in plans_small:  # the same setup on the bigger GPU still fits
        moved = replace(plan.scenario, cluster=replace(plan.scenario.cluster, gpu=big.cluster.gpu))
        assert estimate_scenario(moved).fits


@settings(max_examples=40, deadline=None)
@given(
    model=st.sampled_from(MODELS + ["mgm-8x7b"]), n1=st.integers(1, 16), extra=st.integers(1, 48),
    offload_opt=st.booleans(), offload_param=st.booleans(), method=st.sampled_from(["full", "lora", "qlora"]),
)
def test_more_gpus_under_zero3_never_raise_per_gpu_model_states(model: str, n1: int, extra: int, offload_opt: bool,
                                                                offload_param: bool, method: str) -> None:
    def states(n: int) -> int:
        per_node = min(n, 8)
        nodes = -(-n // per_node)
        n = per_node * nodes
        scn = make_scenario({
            "model": model, "hardware": {"gpu": "a100-80g", "gpus_per_node": per_node, "nodes": nodes},
            "train": {"method": method},
            "parallel": {"engine": "deepspeed", "zero": 3,
                         "offload_optimizer": "cpu" if offload_opt else "none",
                         "offload_param": "cpu" if offload_param else "none"},
        })
        est = estimate_scenario(scn)
        return max(p.breakdown.group("model_states") for p in est.phases)

    n2 = n1 + extra
    if n1 > 8:
        n1 = 8 * (n1 // 8)
    if n2 > 8:
        n2 = max(8 * (n2 // 8), n1)
    assert states(n2) <= states(n1)
