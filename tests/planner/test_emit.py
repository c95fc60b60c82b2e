"""Emitted files: ds_config.json as DeepSpeed reads it, accelerate config, launch script, safe writing."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from vramplan.adapters.accelerate_emit import emit_accelerate_config
from vramplan.adapters.deepspeed_emit import emit_deepspeed_config
from vramplan.adapters.emit_bundle import render_bundle, write_bundle
from vramplan.adapters.launch_emit import emit_launch_script
from vramplan.core.errors import VramplanError
from vramplan.core.planner import PlanRequest, search_plans
from vramplan.core.scenario import Engine, FsdpSharding, Offload, Optimizer, Precision, Scenario
from vramplan.registry import load_gpu

from .helpers import builtin, preset


def _with(scn: Scenario, **par: object) -> Scenario:
    return replace(scn, parallel=replace(scn.parallel, **par))


@lru_cache(maxsize=1)
def deepspeed_scenarios() -> tuple[Scenario, ...]:
    """DeepSpeed plans and hand-made variants covering every block the emitter writes."""
    out = [p.scenario for p in search_plans(builtin("mgm-2b-stage2"), PlanRequest()).plans
           if p.scenario.parallel.engine is Engine.DEEPSPEED]
    z3 = builtin("mgm-8x7b-stage2")
    out += [
        z3,
        _with(z3, offload_optimizer=Offload.CPU, offload_param=Offload.CPU),
        _with(z3, offload_optimizer=Offload.NVME, offload_param=Offload.NVME),
        preset("llama-3.1-8b", "v100-32g", 8, precision="fp16-mixed", attention="sdpa", micro_batch=2, grad_accum=3),
        replace(builtin("mgm-2b-stage2"), train=replace(builtin("mgm-2b-stage2").train, optimizer=Optimizer.ADAMW_8BIT)),
    ]
    return tuple(out)


def _device(value: object) -> str:
    """DeepSpeed's offload device (an enum, or its value with pydantic's use_enum_values)."""
    return str(getattr(value, "value", value))


class _MPU:
    """Just enough of an mpu for DeepSpeedConfig to take the data-parallel world size from it."""

    def __init__(self, world: int) -> None:
        self.world = world

    def get_data_parallel_world_size(self) -> int:
        return self.world


@pytest.mark.parametrize("index", range(len(deepspeed_scenarios())))
def test_ds_config_loads_with_deepspeeds_own_config_class(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    deepspeed_config = pytest.importorskip("deepspeed.runtime.config")
    scn = deepspeed_scenarios()[index]
    cfg = emit_deepspeed_config(scn)
    # Without torch.distributed DeepSpeedConfig falls back to world size 1; with dist "initialised" it asks the
    # mpu for the data-parallel size, which lets the batch assertion run with the plan's world size.
    monkeypatch.setattr(deepspeed_config.dist, "get_rank", lambda *a, **k: 0)
    ds = deepspeed_config.DeepSpeedConfig(json.loads(json.dumps(cfg)), mpu=_MPU(scn.dp_degree))
    assert ds.train_batch_size == scn.train.micro_batch * scn.train.grad_accum * scn.dp_degree
    assert ds.train_micro_batch_size_per_gpu == scn.train.micro_batch
    assert ds.gradient_accumulation_steps == scn.train.grad_accum
    assert ds.zero_config.stage == scn.parallel.zero
    if scn.parallel.offload_optimizer is not Offload.NONE:
        assert _device(ds.zero_config.offload_optimizer.device) == scn.parallel.offload_optimizer.value
        assert ds.optimizer_name == "adamw"
    if scn.parallel.zero == 3 and scn.parallel.offload_param is not Offload.NONE:
        assert _device(ds.zero_config.offload_param.device) == scn.parallel.offload_param.value
    with pytest.raises(AssertionError, match="train_batch_size"):
        deepspeed_config.DeepSpeedConfig(json.loads(json.dumps(cfg)), mpu=_MPU(scn.dp_degree + 1))


@pytest.mark.parametrize("index", range(len(deepspeed_scenarios())))
def test_ds_config_is_consistent(index: int) -> None:
    scn = deepspeed_scenarios()[index]
    cfg = emit_deepspeed_config(scn)
    t = scn.train
    assert cfg["train_batch_size"] == cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"] * scn.dp_degree
    assert cfg["bf16"]["enabled"] == (t.precision in (Precision.BF16_MIXED, Precision.BF16_PURE))
    assert cfg["fp16"]["enabled"] == (t.precision is Precision.FP16_MIXED)
    zero = cfg["zero_optimization"]
    for key, value in zero.items():
        if key.endswith(("_size", "_threshold", "_parameters", "distance")):
            assert isinstance(value, int) and not isinstance(value, bool), key
    h = scn.model.decoder.hidden_size
    if scn.parallel.deepspeed.reduce_bucket_size is None:
        assert zero["reduce_bucket_size"] == h * h
    if scn.parallel.zero == 3:
        assert zero["stage3_param_persistence_threshold"] == 10 * h
        assert zero["stage3_prefetch_bucket_size"] == int(0.9 * h * h)
    assert ("optimizer" in cfg) == (scn.parallel.offload_optimizer is not Offload.NONE)
    if t.optimizer is Optimizer.ADAMW_8BIT:
        assert cfg["zero_allow_untested_optimizer"] is True
    if Offload.NVME in (scn.parallel.offload_optimizer, scn.parallel.offload_param):
        assert "aio" in cfg and zero["sub_group_size"] <= 100_000_000
        largest_partition = scn.model.decoder.moe.num_experts * 2 * scn.model.decoder.moe.expert_intermediate * h
        assert zero["offload_param"]["buffer_size"] > largest_partition // scn.dp_degree


def test_zero_section_validates_with_deepspeeds_zero_config() -> None:
    zero_config = pytest.importorskip("deepspeed.runtime.zero.config")
    for scn in deepspeed_scenarios():
        zero_config.DeepSpeedZeroConfig(**emit_deepspeed_config(scn)["zero_optimization"])


@lru_cache(maxsize=1)
def fsdp_scenarios() -> tuple[Scenario, ...]:
    base = preset("mgm-2b", "rtx4090", 4, grad_accum=4)
    return (
        _with(base, engine=Engine.FSDP),
        _with(base, engine=Engine.FSDP2, fsdp_sharding=FsdpSharding.SHARD_GRAD_OP),
        _with(base, engine=Engine.FSDP2, offload_param=Offload.CPU, offload_optimizer=Offload.CPU),
        _with(preset("llama-3.1-8b", "a100-80g", 8), engine=Engine.FSDP2, tp=2),
    )


@pytest.mark.parametrize("index", range(4))
def test_accelerate_config_loads_with_accelerate(index: int, tmp_path: Path) -> None:
    scn = fsdp_scenarios()[index]
    cfg = emit_accelerate_config(scn)
    fsdp = cfg["fsdp_config"]
    assert cfg["distributed_type"] == "FSDP" and cfg["num_processes"] == scn.cluster.world_size
    assert fsdp["fsdp_version"] == (2 if scn.parallel.engine is Engine.FSDP2 else 1)
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == scn.model.decoder_layer_class
    assert fsdp["fsdp_offload_params"] == (scn.parallel.offload_param is not Offload.NONE)
    if scn.parallel.tp > 1:
        assert cfg["parallelism_config"]["parallelism_config_tp_size"] == scn.parallel.tp
    config_args = pytest.importorskip("accelerate.commands.config.config_args")
    path = tmp_path / "accelerate_config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    loaded = config_args.ClusterConfig.from_yaml_file(str(path))
    assert loaded.fsdp_config["fsdp_version"] == fsdp["fsdp_version"]
    from accelerate.utils.constants import FSDP_AUTO_WRAP_POLICY, FSDP_SHARDING_STRATEGY

    assert fsdp["fsdp_auto_wrap_policy"] in FSDP_AUTO_WRAP_POLICY
    if fsdp["fsdp_version"] == 1:
        assert fsdp["fsdp_reshard_after_forward"] in FSDP_SHARDING_STRATEGY
    else:
        assert isinstance(fsdp["fsdp_reshard_after_forward"], bool)


def test_emitters_refuse_the_wrong_engine() -> None:
    with pytest.raises(VramplanError, match="deepspeed"):
        emit_deepspeed_config(fsdp_scenarios()[0])
    with pytest.raises(VramplanError, match="fsdp"):
        emit_accelerate_config(builtin("mgm-2b-stage2"))


def test_launch_script_environment_and_flags() -> None:
    scn = builtin("mgm-8x7b-stage2")
    text = emit_launch_script(replace(scn, parallel=replace(scn.parallel, expandable_segments=True)), "YanweiLi/MGM-8x7B")
    assert "export NCCL_P2P_DISABLE=1" in text
    assert "export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True" in text
    assert "export ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES=MixtralSparseMoeBlock" in text
    assert "deepspeed.utils.set_z3_leaf_modules(model, [MixtralSparseMoeBlock])" in text
    assert "from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock" in text
    assert "deepspeed --num_gpus 6 mgm/train/train_mem.py" in text
    for flag in ("--per_device_train_batch_size 4", "--gradient_accumulation_steps 1", "--gradient_checkpointing True",
                 "--bf16 True", "--deepspeed ds_config.json", "--model_max_length 2048"):
        assert flag in text
    assert "--attn_implementation" not in text  # train_mem.py forces FA2 and rejects unknown flags

    a100 = replace(scn, cluster=replace(scn.cluster, gpu=load_gpu("a100-80g")),
                   parallel=replace(scn.parallel, zero=2))
    text = emit_launch_script(a100, "m")
    assert "NCCL_P2P_DISABLE" not in text and "set_z3_leaf_modules" not in text


def test_launch_script_for_other_engines_and_methods() -> None:
    llama = preset("llama-3.1-8b", "a100-80g", 8, method="qlora")
    text = emit_launch_script(llama, "meta-llama/Llama-3.1-8B")
    assert "deepspeed --num_gpus 8 train.py" in text
    assert "--attn_implementation flash_attention_2" in text
    assert "--lora_enable True" in text and "--bits 4" in text and "--lora_r 16" in text
    text = emit_launch_script(fsdp_scenarios()[0], "m", files_dir="/abs/out")
    assert "accelerate launch --config_file /abs/out/accelerate_config.yaml" in text
    assert "--accelerator_config /abs/out/accelerator_config.json" in text
    ddp = _with(preset("gemma-2b", "a100-80g", 4), engine=Engine.DDP)
    assert "torchrun --nproc_per_node 4 train.py" in emit_launch_script(ddp, "google/gemma-2b")
    single = preset("gemma-2b", "a100-80g", 1, grad_ckpt="none")
    text = emit_launch_script(single, "google/gemma-2b")
    assert "python train.py" in text and "--gradient_checkpointing False" in text


def test_launch_scripts_are_valid_bash(tmp_path: Path) -> None:
    for scn in deepspeed_scenarios()[:3] + fsdp_scenarios():
        path = tmp_path / "launch.sh"
        path.write_text(emit_launch_script(scn, "some/model"), encoding="utf-8")
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


def test_bundle_files_per_engine() -> None:
    assert set(render_bundle(builtin("mgm-2b-stage2"), "mgm-2b", "x")) == {"scenario.yaml", "ds_config.json", "launch.sh"}
    assert set(render_bundle(fsdp_scenarios()[0], "mgm-2b", "x")) == {
        "scenario.yaml", "accelerate_config.yaml", "accelerator_config.json", "launch.sh"}
    one = preset("gemma-2b", "a100-80g", 1)
    assert set(render_bundle(one, "gemma-2b", "x")) == {"scenario.yaml", "launch.sh"}


def test_existing_files_are_not_overwritten_without_force(tmp_path: Path) -> None:
    files = render_bundle(builtin("mgm-2b-stage2"), "mgm-2b", "x", out_dir=tmp_path)
    (tmp_path / "launch.sh").write_text("mine\n", encoding="utf-8")
    with pytest.raises(VramplanError, match="launch.sh already exists; pass --force"):
        write_bundle(files, tmp_path)
    assert (tmp_path / "launch.sh").read_text(encoding="utf-8") == "mine\n"
    assert not (tmp_path / "ds_config.json").exists()  # nothing written when one file is in the way
    written = write_bundle(files, tmp_path, force=True)
    assert {p.name for p in written} == set(files)
    assert (tmp_path / "launch.sh").read_text(encoding="utf-8") == files["launch.sh"]
    assert (tmp_path / "launch.sh").stat().st_mode & 0o111


def test_write_bundle_refuses_a_file_as_directory(tmp_path: Path) -> None:
    target = tmp_path / "plain"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(VramplanError, match="not a directory"):
        write_bundle({"a": "b"}, target)


def test_pure_bf16_fsdp_plan_says_how_to_load() -> None:
    scn = replace(fsdp_scenarios()[0], train=replace(fsdp_scenarios()[0].train, precision=Precision.BF16_PURE))
    assert emit_accelerate_config(scn)["mixed_precision"] == "no"
    assert "torch_dtype=torch.bfloat16" in emit_launch_script(scn, "m")
