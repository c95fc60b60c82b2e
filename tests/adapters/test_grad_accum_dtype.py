"""``data_types.grad_accum_dtype``: which optimizer DeepSpeed builds at ZeRO-0 with bf16 (engine.py
``_do_optimizer_sanity_check``: the model dtype -> DDP_BFLOAT16, unpartitioned fp32 master and Adam; fp32 ->
BF16_Optimizer, master and Adam partitioned over the ranks, an fp32 gradient buffer)."""

from __future__ import annotations

import pytest

from vramplan.adapters.deepspeed_emit import emit_deepspeed_config as deepspeed_config
from vramplan.adapters.scenario_file import scenario_from_dict, scenario_to_dict
from vramplan.core.errors import ScenarioError
from vramplan.core.estimate import estimate_scenario


def _scenario(**ds: object) -> dict:
    return {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-80g", "gpus_per_node": 4},
            "train": {"precision": "bf16-mixed", "micro_batch": 1, "seq_len": 1024},
            "parallel": {"engine": "deepspeed", "zero": 0, "deepspeed": dict(ds)}}


def test_spellings_and_round_trip() -> None:
    for spelling in ("fp32", "float32", "torch.float32"):
        scn = scenario_from_dict(_scenario(grad_accum_dtype=spelling))
        assert scn.parallel.deepspeed.grad_accum_dtype == "fp32"
    scn = scenario_from_dict(_scenario(grad_accum_dtype="float32"))
    assert scenario_to_dict(scn)["parallel"]["deepspeed"]["grad_accum_dtype"] == "fp32"
    assert scenario_from_dict(_scenario(grad_accum_dtype="auto")).parallel.deepspeed.grad_accum_dtype is None
    with pytest.raises(ScenarioError, match="parallel.deepspeed.grad_accum_dtype='int8'"):
        scenario_from_dict(_scenario(grad_accum_dtype="int8"))


def test_zero0_bf16_master_and_adam_follow_the_optimizer_deepspeed_builds() -> None:
    default = scenario_from_dict(_scenario())
    fp32 = scenario_from_dict(_scenario(grad_accum_dtype="fp32"))
    psi = default.model.num_params
    d = estimate_scenario(default).phases[2].breakdown  # optimizer step
    f = estimate_scenario(fp32).phases[2].breakdown
    assert d["model_states/master"] == 4 * psi and d["model_states/optimizer"] == 8 * psi  # DDP_BFLOAT16
    assert f["model_states/master"] == 4 * -(-psi // 4) and f["model_states/optimizer"] == 8 * -(-psi // 4)
    assert f["model_states/grads"] == 4 * psi  # BF16_Optimizer's fp32 gradient buffer


def test_emitted_config_carries_it() -> None:
    cfg = deepspeed_config(scenario_from_dict(_scenario(grad_accum_dtype="fp32")))
    assert cfg["data_types"] == {"grad_accum_dtype": "fp32"}
    assert "data_types" not in deepspeed_config(scenario_from_dict(_scenario()))
