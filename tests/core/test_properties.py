"""Invariants of the cost model, checked over generated scenarios (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.core.breakdown import KEYS
from vramplan.core.estimate import estimate_scenario
from vramplan.registry import load_preset

MODELS = ["llama-2-7b", "mixtral-8x7b", "mgm-2b", "qwen2.5-7b", "gemma-2b", "deepseek-v2-lite", "llava-1.5-7b"]
_SPECS = {name: load_preset(name) for name in MODELS}

base_train = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["full", "lora", "qlora"]),
        "precision": st.sampled_from(["bf16-mixed", "bf16-pure", "fp16-mixed"]),
        "optimizer": st.sampled_from(["adamw", "adamw-fused", "adamw-8bit"]),
        "micro_batch": st.integers(1, 8),
        "grad_accum": st.integers(1, 4),
        "seq_len": st.sampled_from([256, 1024, 2048, 4096]),
        "grad_ckpt": st.sampled_from(["none", "selective", "full"]),
        "attention": st.sampled_from(["flash", "sdpa", "eager"]),
        "loss": st.sampled_from(["standard", "chunked"]),
    }
)


def scenario_dict(model: str, train: dict[str, Any], gpus: int, engine: str, zero: int, **par: Any) -> dict[str, Any]:
    return {
        "model": model,
        "train": dict(train),
        "hardware": {"gpu": "a100-80g", "gpus_per_node": gpus},
        "parallel": {"engine": engine, "zero": zero, **par},
    }


def est(data: dict[str, Any]):
    return estimate_scenario(scenario_from_dict(data, model=_SPECS[data["model"]]))


def model_states(e, phase: str = "optimizer") -> int:
    return next(p for p in e.phases if p.phase == phase).breakdown.group("model_states")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(MODELS), base_train, st.sampled_from([1, 2, 4, 8]), st.sampled_from(["none", "cpu"]))
def test_more_gpus_under_zero3_never_raise_model_states(model: str, train: dict[str, Any], n: int, offload: str) -> None:
    small = est(scenario_dict(model, train, n, "deepspeed", 3, offload_optimizer=offload))
    large = est(scenario_dict(model, train, 2 * n, "deepspeed", 3, offload_optimizer=offload))
    assert model_states(large) <= model_states(small)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(MODELS), base_train, st.sampled_from([2, 4, 8]))
def test_higher_zero_stage_never_raises_model_states(model: str, train: dict[str, Any], n: int) -> None:
    values = [model_states(est(scenario_dict(model, train, n, "deepspeed", z))) for z in (1, 2, 3)]
    assert values == sorted(values, reverse=True)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(MODELS), base_train, st.sampled_from([1, 4]))
def test_activations_never_fall_with_longer_sequence_or_larger_batch(model: str, train: dict[str, Any], n: int) -> None:
    engine = "single" if n == 1 else "deepspeed"

    def acts(**override: Any) -> int:
        e = est(scenario_dict(model, dict(train, **override), n, engine, 2))
        return max(p.breakdown.group("activations") for p in e.phases)

    assert acts(seq_len=train["seq_len"] * 2) >= acts()
    assert acts(micro_batch=train["micro_batch"] + 1) >= acts()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(MODELS), base_train)
def test_more_recomputation_never_raises_saved_activations(model: str, train: dict[str, Any]) -> None:
    def saved(ckpt: str) -> int:
        e = est(scenario_dict(model, dict(train, grad_ckpt=ckpt), 1, "single", 0))
        return next(p for p in e.phases if p.phase == "forward").breakdown["activations/llm"]

    assert saved("none") >= saved("selective") >= saved("full")


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(MODELS), base_train, st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([("deepspeed", 0), ("deepspeed", 1), ("deepspeed", 2), ("deepspeed", 3), ("ddp", 0), ("fsdp", 0), ("fsdp2", 0)]),
)
def test_totals_are_consistent(model: str, train: dict[str, Any], n: int, engine_zero: tuple[str, int]) -> None:
    engine, zero = engine_zero
    if n == 1 and engine == "ddp":
        engine = "single"
    e = est(scenario_dict(model, train, n, engine, zero))
    for p in e.phases:
        bd = p.breakdown
        assert set(bd.items) == set(KEYS)
        assert bd.device_used_bytes == sum(bd.items.values())  # the total is the sum of its leaves
        assert 0 < bd.allocated_bytes <= bd.reserved_bytes <= bd.device_used_bytes
    assert e.peak_allocated_bytes <= e.peak_reserved_bytes <= e.device_used_bytes
    assert e.fits == (e.device_used_bytes <= e.usable_bytes)  # host RAM unknown here


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(MODELS), base_train)
def test_offloading_the_optimizer_never_raises_gpu_memory(model: str, train: dict[str, Any]) -> None:
    for zero in (2, 3):
        on_gpu = est(scenario_dict(model, train, 4, "deepspeed", zero))
        offloaded = est(scenario_dict(model, train, 4, "deepspeed", zero, offload_optimizer="cpu"))
        assert offloaded.device_used_bytes <= on_gpu.device_used_bytes
        assert offloaded.host_ram_bytes >= on_gpu.host_ram_bytes
