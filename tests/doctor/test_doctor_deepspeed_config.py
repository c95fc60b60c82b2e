"""DeepSpeed JSON parsing: HF "auto" resolution, DeepSpeed defaults, mismatches, errors."""

from __future__ import annotations

import json

import pytest
from doctor_helpers import LLAVA, MGM, zero

from vramplan.adapters.deepspeed_config import deepspeed_settings_to_parallel, parse_deepspeed_config
from vramplan.adapters.scenario_file import parallel_from_dict
from vramplan.core.errors import VramplanError


def test_mgm_zero2_auto_values_resolved_like_hf():
    s = parse_deepspeed_config(MGM / "scripts/zero2.json", hidden_size=2048, world_size=4, micro_batch=8, grad_accum=2,
                               bf16=True, fp16=False)
    assert s.zero_stage == 2
    assert s.reduce_bucket_size == 2048 * 2048 and s.reduce_bucket_size_auto
    assert s.overlap_comm and s.overlap_comm_set and s.contiguous_gradients
    assert s.sub_group_size == 1_000_000_000
    assert s.allgather_bucket_size == 500_000_000 and not s.allgather_bucket_size_set  # DeepSpeed default
    assert (s.train_micro_batch_size_per_gpu, s.gradient_accumulation_steps, s.train_batch_size) == (8, 2, 64)
    assert s.bf16_enabled and not s.fp16_enabled
    assert s.mismatches == ()
    assert "zero_optimization.reduce_bucket_size" in s.auto_keys
    assert not s.has_optimizer_block and s.zero_force_ds_cpu_optimizer


def test_mgm_zero3_stage3_auto_values():
    s = parse_deepspeed_config(MGM / "scripts/zero3.json", hidden_size=4096, world_size=6, micro_batch=4, grad_accum=1,
                               bf16=True)
    assert s.zero_stage == 3
    assert s.reduce_bucket_size == 4096**2
    assert s.stage3_prefetch_bucket_size == int(0.9 * 4096**2) and s.prefetch_auto_fractional
    assert s.stage3_param_persistence_threshold == 10 * 4096
    assert s.stage3_gather_16bit_weights_on_model_save
    assert s.stage3_max_live_parameters == 1_000_000_000
    assert s.train_batch_size == 24


def test_zero2_offload_and_llava_offload_blocks():
    s = parse_deepspeed_config(MGM / "scripts/zero2_offload.json", hidden_size=4096)
    assert (s.offload_optimizer, s.offload_param) == ("cpu", "cpu") and s.pin_memory
    t = parse_deepspeed_config(LLAVA / "scripts/zero3_offload.json", hidden_size=4096)
    assert t.has_optimizer_block and t.optimizer_type == "AdamW" and t.has_scheduler_block
    assert t.stage3_gather_16bit_weights_on_model_save  # the older key name


def test_defaults_when_keys_absent():
    s = parse_deepspeed_config({"zero_optimization": {"stage": 2}}, hidden_size=4096)
    assert s.reduce_bucket_size == 500_000_000 and not s.reduce_bucket_size_auto
    assert s.overlap_comm is False  # DeepSpeed default below stage 3
    t = parse_deepspeed_config({"zero_optimization": {"stage": 3}}, hidden_size=4096)
    assert t.overlap_comm is True and t.stage3_prefetch_bucket_size == 50_000_000
    assert parse_deepspeed_config({}).zero_stage == 0


def test_auto_without_hidden_size_stays_unknown_and_batch_defaults_follow_hf():
    s = parse_deepspeed_config(zero(3, stage3_prefetch_bucket_size="auto"), world_size=2)
    assert s.reduce_bucket_size is None and s.stage3_prefetch_bucket_size is None
    assert (s.train_micro_batch_size_per_gpu, s.gradient_accumulation_steps, s.train_batch_size) == (8, 1, 16)
    assert s.mismatches == ()  # nothing known to mismatch


def test_literal_values_that_disagree_with_training_arguments():
    cfg = {**zero(2), "train_micro_batch_size_per_gpu": 4, "train_batch_size": 999, "bf16": {"enabled": False}}
    s = parse_deepspeed_config(cfg, hidden_size=4096, world_size=2, micro_batch=8, grad_accum=1, bf16=True)
    text = " ".join(s.mismatches)
    assert "train_micro_batch_size_per_gpu=4 vs hf per_device_train_batch_size=8" in text
    assert "train_batch_size=999" in text and "bf16.enabled=False" in text


def test_fractional_integer_literal_and_legacy_cpu_offload():
    s = parse_deepspeed_config({"zero_optimization": {"stage": 3, "stage3_prefetch_bucket_size": 15099494.4,
                                                      "cpu_offload": True}})
    assert s.fractional_int_keys == (("zero_optimization.stage3_prefetch_bucket_size", 15099494.4),)
    assert s.offload_optimizer == "cpu"


def test_settings_to_parallel_is_a_valid_scenario_section():
    s = parse_deepspeed_config(MGM / "scripts/zero3.json", hidden_size=4096)
    par = deepspeed_settings_to_parallel(s)
    assert par["engine"] == "deepspeed" and par["zero"] == 3
    assert par["deepspeed"]["reduce_bucket_size"] == "auto"
    assert par["deepspeed"]["stage3_prefetch_bucket_size"] == "auto"
    spec = parallel_from_dict(par)
    assert spec.zero == 3 and spec.deepspeed.reduce_bucket_size is None and spec.deepspeed.overlap_comm is True
    literal = deepspeed_settings_to_parallel(parse_deepspeed_config(zero(2, reduce_bucket_size=2e8)))
    assert parallel_from_dict(literal).deepspeed.reduce_bucket_size == 200_000_000


def test_invalid_json_names_file_line_and_column(tmp_path):
    bad = tmp_path / "ds.json"
    bad.write_text('{\n  "zero_optimization": {"stage": 2,}\n}\n')
    with pytest.raises(VramplanError, match=r"ds\.json:2:36: invalid JSON"):
        parse_deepspeed_config(bad)


def test_unreadable_and_wrong_shapes(tmp_path):
    with pytest.raises(VramplanError, match="not found"):
        parse_deepspeed_config(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(VramplanError, match="must be a JSON object"):
        parse_deepspeed_config(tmp_path / "list.json")
    with pytest.raises(VramplanError, match="zero_optimization.stage"):
        parse_deepspeed_config({"zero_optimization": {"stage": 5}})
    with pytest.raises(VramplanError, match="offload_optimizer.device"):
        parse_deepspeed_config({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "disk"}}})
