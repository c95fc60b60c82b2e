"""The planner on the MGM reports and on the rules of the search space."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vramplan.core.planner import PlanRequest, nearest_options, search_plans, size_cluster
from vramplan.core.planner.space import Family, enumerate_families
from vramplan.core.scenario import Attention, Engine, GradCkpt, Method, Offload, Optimizer, Precision
from vramplan.core.units import GiB
from vramplan.registry import load_gpu

from .helpers import builtin, preset


def _fixes_of_the_report(plan) -> bool:  # type: ignore[no-untyped-def]
    """Optimizer offload or ZeRO-3 (what MGM #75's reporter and maintainer used)."""
    p = plan.scenario.parallel
    return p.offload_optimizer is not Offload.NONE or (p.engine is Engine.DEEPSPEED and p.zero == 3)


def test_mgm2b_stage2_plans_fit_and_use_the_reported_fixes() -> None:
    start = builtin("mgm-2b-stage2")
    result = search_plans(start, PlanRequest(top=5))
    assert not result.start_estimate.fits
    assert result.plans
    for plan in result.plans:
        assert plan.estimate.fits
        assert plan.scenario.train.micro_batch < start.train.micro_batch
        g = plan.scenario.train.micro_batch * plan.scenario.train.grad_accum * plan.scenario.dp_degree
        assert g == 64  # the global batch is kept
    assert any(_fixes_of_the_report(p) for p in result.plans[:3])


def test_mgm2b_preset_on_4x4090() -> None:
    start = preset("mgm-2b", "rtx4090", 4, micro_batch=2)  # micro-batch 1 fits since the trace-checked model
    result = search_plans(start, PlanRequest())
    assert not result.start_estimate.fits
    assert result.plans and all(p.estimate.fits for p in result.plans)
    assert any(_fixes_of_the_report(p) for p in result.plans)
    assert {p.scenario.parallel.zero for p in result.plans if p.scenario.parallel.engine is Engine.DEEPSPEED} >= {2, 3}
    assert all(p.scenario.train.micro_batch <= start.train.micro_batch for p in result.plans)


def test_mgm8x7b_full_on_6x4090_nothing_fits_with_256gb_host_ram() -> None:
    start = builtin("mgm-8x7b-stage2")
    request = PlanRequest(methods=(Method.FULL,))
    result = search_plans(start, request)
    assert not result.plans
    assert result.rejected
    closest = result.rejected[0]
    assert closest.kind == "host"  # offload fits the GPUs; the host RAM is what is missing
    assert closest.estimate.fits_gpu and closest.over_by_bytes > 0
    options = nearest_options(start, request, result, [load_gpu("a100-80g")])
    kinds = [o.kind for o in options]
    assert kinds[0] == "host_ram" and "method" in kinds and "more_gpus" in kinds and "gpu_type" in kinds
    zero3 = [o for o in options if o.kind == "host_ram" and o.rejection is not None
             and o.rejection.scenario.parallel.engine is Engine.DEEPSPEED]
    assert zero3 and zero3[0].host_ram_needed_bytes > 256e9
    qlora = [o for o in options if o.kind == "method" and o.plan is not None]
    assert qlora and qlora[0].plan.scenario.train.method is Method.QLORA and qlora[0].plan.estimate.fits
    a100 = next(o.sizing for o in options if o.kind == "gpu_type")
    assert a100.count is not None and a100.plan is not None and a100.plan.estimate.fits


def test_lora_only_when_allowed_and_marked_as_a_change() -> None:
    start = builtin("mgm-8x7b-stage2")
    only_full = search_plans(start, PlanRequest())
    assert all(p.scenario.train.method is Method.FULL for p in only_full.plans)
    anything = search_plans(start, PlanRequest(methods=(Method.FULL, Method.LORA, Method.QLORA)))
    assert anything.plans
    for plan in anything.plans:
        if plan.scenario.train.method is not Method.FULL:
            assert plan.changes_method
            assert plan.changes[0].startswith("method full -> ")


def test_no_bf16_gpu_gets_fp16_and_sdpa() -> None:
    start = preset("llama-3.1-8b", "v100-32g", 8, seq_len=1024, grad_accum=4)
    result = search_plans(start, PlanRequest(top=3))
    assert result.plans
    for plan in result.plans:
        assert plan.scenario.train.precision is Precision.FP16_MIXED
        assert plan.scenario.train.attention is Attention.SDPA
        assert any("precision" in c for c in plan.changes)


def test_global_batch_kept_or_nearest_with_a_note() -> None:
    start = preset("llama-3.1-8b", "a100-80g", 6)
    exact = search_plans(start, PlanRequest(global_batch=48, top=3))
    assert all(p.scenario.train.micro_batch * p.scenario.train.grad_accum * p.scenario.dp_degree == 48
               for p in exact.plans if p.scenario.parallel.pp == 1)
    odd = search_plans(start, PlanRequest(global_batch=64, top=3, model_parallel=False))
    assert odd.plans and any("not a multiple" in n for n in odd.plans[0].notes)


def test_space_respects_engine_rules() -> None:
    start = builtin("mgm-8x7b-stage2")
    fams = enumerate_families(start, (Method.FULL, Method.LORA))
    for f in fams:
        if f.offload_param is not Offload.NONE and f.engine is Engine.DEEPSPEED:
            assert f.zero == 3
        if f.pp > 1:
            assert f.engine is Engine.DEEPSPEED and f.zero <= 1
        if f.ep > 1:
            assert f.engine is Engine.DEEPSPEED and f.zero <= 2
        if f.tp > 1:
            assert f.engine is Engine.FSDP2
        if f.method is Method.LORA:
            assert f.tp == f.pp == f.ep == 1
    assert Family(Engine.DEEPSPEED, zero=1, ep=2) in fams  # Mixtral: 8 experts over 6 GPUs -> ep 2


def test_no_zero1_with_optimizer_offload() -> None:
    fams = enumerate_families(builtin("mgm-2b-stage2"), (Method.FULL,))
    assert not [f for f in fams if f.engine is Engine.DEEPSPEED and f.zero == 1 and f.offload_optimizer is not Offload.NONE]


def test_offload_plans_use_deepspeed_cpu_adam_and_no_bnb() -> None:
    result = search_plans(builtin("mgm-2b-stage2"), PlanRequest())
    for plan in result.plans:
        p, t = plan.scenario.parallel, plan.scenario.train
        if p.engine is Engine.DEEPSPEED and p.offload_optimizer is not Offload.NONE:
            assert t.optimizer is Optimizer.ADAMW_FUSED


def test_selective_recompute_only_from_a_selective_start() -> None:
    result = search_plans(builtin("mgm-2b-stage2"), PlanRequest())
    assert all(p.scenario.train.grad_ckpt is not GradCkpt.SELECTIVE for p in result.plans)


def test_plans_are_ranked_by_step_time_within_tiers() -> None:
    result = search_plans(builtin("mgm-2b-stage2"), PlanRequest())
    mainstream = [p for p in result.plans if p.scenario.parallel.pp == p.scenario.parallel.tp == 1
                  and p.scenario.parallel.ep == 1]
    times = [p.step_time.total_s for p in mainstream]
    assert times == sorted(times)
    assert list(result.plans[: len(mainstream)]) == mainstream


def test_unknown_host_ram_is_said() -> None:
    result = search_plans(preset("mgm-2b", "rtx4090", 4), PlanRequest())
    assert any("host RAM unknown" in a for a in result.assumptions)


def test_size_cluster_finds_the_smallest_count() -> None:
    start = preset("llama-3.1-8b", "a100-80g", 1, host_ram_gb=512)
    sizing = size_cluster(start, PlanRequest(global_batch=8), load_gpu("rtx4090"), Method.FULL, max_gpus=64)
    assert sizing.count is not None and sizing.plan is not None and sizing.plan.estimate.fits
    assert sizing.plan.scenario.cluster.world_size == sizing.count
    if sizing.count > 1:
        fewer = replace(start, cluster=replace(start.cluster, gpu=load_gpu("rtx4090")))
        from vramplan.core.planner import rehost
        smaller = search_plans(rehost(fewer, load_gpu("rtx4090"), sizing.count - 1),
                               PlanRequest(global_batch=8, model_parallel=False, nvme=False, optimizer_changes=False))
        assert not smaller.plans


def test_request_validation() -> None:
    from vramplan.core.errors import VramplanError

    with pytest.raises(VramplanError, match="--global-batch"):
        PlanRequest(global_batch=0)
    with pytest.raises(VramplanError, match="--top"):
        PlanRequest(top=0)


def test_margin_never_negative() -> None:
    result = search_plans(builtin("mgm-2b-stage2"), PlanRequest())
    assert all(p.estimate.margin_bytes >= 0 for p in result.plans)
    assert all(p.estimate.device_used_bytes <= p.estimate.capacity_bytes - 0.5 * GiB for p in result.plans)
