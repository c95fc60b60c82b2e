"""Launch-script parsing: launchers, continuations, variables, GPU counts, flags, model, scenario dict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from doctor_helpers import LLAVA, MGM_2B, MGM_2B_HD, MGM_7B, MGM_7B_HD, MGM_8X7B, MGM_8X7B_HD

import vramplan
from vramplan.adapters.deepspeed_config import parse_deepspeed_config
from vramplan.adapters.launch_script import (
    launch_to_scenario_dict,
    parse_launch_commands,
    parse_launch_script,
    read_launch_script,
)
from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.core.errors import VramplanError


def test_continuations_comments_and_quotes():
    text = """#!/bin/bash
# a comment with --per_device_train_batch_size 99
deepspeed train.py \\
    --learning_rate 2e-5 \\
    --lr_scheduler_type "cosine" \\
    --per_device_train_batch_size 4 \\
    --gradient_checkpointing_kwargs '{"use_reentrant": false}' \\
    --mm_vision_select_layer -2   # trailing comment
echo done
"""
    spec = parse_launch_script(text)
    assert spec.launcher == "deepspeed" and spec.entry == "train.py"
    assert spec.micro_batch == 4
    assert spec.args["lr_scheduler_type"] == "cosine"
    assert json.loads(spec.args["gradient_checkpointing_kwargs"]) == {"use_reentrant": False}
    assert spec.args["mm_vision_select_layer"] == "-2"
    assert (spec.line, spec.end_line) == (3, 8)


def test_variables_exports_and_defaults():
    text = """
MB=4
export GA=8
SEQ=${SEQ_LEN:-4096}
OPTS="--bf16 True --gradient_checkpointing True"
LR_MULTI="model.mm_projector:2,model.vlm_uni:2"
deepspeed train.py --per_device_train_batch_size $MB --gradient_accumulation_steps ${GA} \\
    --model_max_length $SEQ $OPTS --lr_multi $LR_MULTI --output_dir ./out/${NAME:-run1} --seed ${1}
"""
    spec = parse_launch_script(text)
    assert (spec.micro_batch, spec.grad_accum, spec.seq_len) == (4, 8, 4096)
    assert spec.bf16 and spec.gradient_checkpointing
    assert spec.args["lr_multi"] == "model.mm_projector:2,model.vlm_uni:2"
    assert spec.args["output_dir"] == "./out/run1"
    assert spec.env["GA"] == "8" and "MB" not in spec.env  # only exported variables reach the environment
    assert "${1}" in spec.unresolved
    override = parse_launch_script(text, env={"SEQ_LEN": "1024"})
    assert override.seq_len == 1024


def test_unknown_flags_are_listed_not_fatal():
    spec = parse_launch_script("torchrun --nproc_per_node 2 train.py --per_device_train_batch_size 2 "
                               "--my_custom_flag 3 --another --bf16")
    assert spec.unknown_flags == ("--my_custom_flag", "--another")
    assert spec.args["another"] == "True" and spec.bf16


def test_include_num_gpus_num_nodes_and_exclude():
    assert parse_launch_script("deepspeed --include localhost:0,1,2,3 train.py --bf16").gpus_per_node == 4
    assert parse_launch_script("deepspeed --num_gpus 2 train.py").gpus_per_node == 2
    assert parse_launch_script("deepspeed --num_gpus=3 train.py").gpus_per_node == 3
    spec = parse_launch_script("deepspeed train.py --bf16")
    assert spec.gpus_per_node is None and "all GPUs" in spec.gpu_count_source


def test_hostfile_read_with_filters(tmp_path):
    (tmp_path / "hosts").write_text("# cluster\nnode-a slots=8\nnode-b slots=8\n\nnode-c slots=8\n")
    spec = parse_launch_script("deepspeed --hostfile hosts train.py", base_dir=tmp_path)
    assert (spec.gpus_per_node, spec.nodes) == (8, 3)
    assert spec.hostfile_slots == (("node-a", 8), ("node-b", 8), ("node-c", 8))
    assert parse_launch_script("deepspeed --hostfile hosts --num_nodes 2 --num_gpus 4 train.py",
                               base_dir=tmp_path).world_size == 8
    assert parse_launch_script("deepspeed -H hosts --include node-a:0,1@node-b:0,1 train.py",
                               base_dir=tmp_path).world_size == 4
    assert parse_launch_script("deepspeed --hostfile hosts --exclude node-c train.py", base_dir=tmp_path).world_size == 16
    missing = parse_launch_script("deepspeed --hostfile nowhere train.py", base_dir=tmp_path)
    assert missing.gpus_per_node is None and any("not found" in w for w in missing.warnings)


def test_mgm_hostfiles_are_found_from_the_script_folder():
    assert read_launch_script(MGM_7B).world_size == 16  # hostfile: 2 x 8 slots
    hd = read_launch_script(MGM_2B_HD)
    assert hd.world_size == 32 and hd.hostfile_path.endswith("hostfile_4")


def test_cuda_visible_devices_honoured_only_without_filters():
    spec = parse_launch_script("CUDA_VISIBLE_DEVICES=0,1,2 deepspeed train.py --bf16")
    assert spec.gpus_per_node == 3 and spec.env["CUDA_VISIBLE_DEVICES"] == "0,1,2"
    exported = parse_launch_script("export CUDA_VISIBLE_DEVICES=4,5\ndeepspeed train.py")
    assert exported.gpus_per_node == 2
    ignored = parse_launch_script("CUDA_VISIBLE_DEVICES=0,1 deepspeed --include localhost:2,3,4 train.py")
    assert ignored.gpus_per_node == 3 and any("ignored" in w for w in ignored.warnings)
    torch = parse_launch_script("CUDA_VISIBLE_DEVICES=0,1 torchrun --nproc_per_node gpu train.py")
    assert torch.gpus_per_node == 2


def test_other_launchers():
    t = parse_launch_script("torchrun --nnodes 2 --nproc-per-node=8 -m my.train --bf16")
    assert (t.launcher, t.entry, t.entry_is_module, t.world_size) == ("torchrun", "my.train", True, 16)
    p = parse_launch_script("python -m torch.distributed.run --nproc_per_node 4 train.py --fp16")
    assert (p.launcher, p.gpus_per_node, p.fp16) == ("torchrun", 4, True)
    a = parse_launch_script("accelerate launch --config_file cfg.yaml --num_processes 8 --num_machines 2 "
                            "--use_deepspeed --zero_stage 3 train.py --bf16")
    assert (a.launcher, a.world_size, a.launcher_args["zero_stage"], a.uses_deepspeed) == ("accelerate", 8, "3", True)
    m = parse_launch_script("nohup python3 -u -m llava.train.train_mem --bf16 True &")
    assert (m.launcher, m.entry, m.entry_is_module, m.world_size) == ("python", "llava.train.train_mem", True, 1)


def test_several_commands_choose_the_last_training_one():
    specs = parse_launch_commands(MGM_2B.read_text(), base_dir=MGM_2B.parent)
    assert len(specs) == 2 and specs[0].bool_flag("tune_mm_mlp_adapter")
    chosen = read_launch_script(MGM_2B)
    assert chosen.command_index == 2 and chosen.micro_batch == 8 and chosen.grad_accum == 2
    first = read_launch_script(MGM_2B, command=1)
    assert first.grad_accum == 4 and first.deepspeed_config.endswith("zero2_offload.json")
    with pytest.raises(VramplanError, match="--command"):
        read_launch_script(MGM_2B, command=3)


def test_no_launcher_line_says_what_it_looked_for(tmp_path):
    script = tmp_path / "prep.sh"
    script.write_text("#!/bin/bash\nexport A=1\necho hello\npip install -r requirements.txt\n")
    with pytest.raises(VramplanError, match="no launcher line found; looked for a command starting with deepspeed, "
                                            "torchrun, accelerate launch"):
        read_launch_script(script)


@pytest.mark.parametrize("script, preset, micro, ga, seq, world, ds_name", [
    (MGM_2B, "mgm-2b", 8, 2, 2048, None, "zero2.json"),
    (MGM_2B_HD, "mgm-2b-hd", 4, 1, 4096, 32, "zero2.json"),
    (MGM_7B, "mgm-7b", 8, 1, 2048, 16, "zero2_offload.json"),
    (MGM_7B_HD, "mgm-7b-hd", 4, 1, 4096, 32, "zero2.json"),
    (MGM_8X7B, "mgm-8x7b", 4, 1, 2048, 32, "zero3.json"),
    (MGM_8X7B_HD, "mgm-8x7b-hd", 4, 1, 4096, 32, "zero3.json"),
    (LLAVA / "scripts/v1_5/finetune.sh", "llava-1.5-13b", 16, 1, 2048, None, "zero3.json"),
    (LLAVA / "scripts/v1_5/finetune_lora.sh", "llava-1.5-13b", 16, 1, 2048, None, "zero3.json"),
    (LLAVA / "scripts/v1_5/pretrain.sh", "llava-1.5-13b", 32, 1, 2048, None, "zero2.json"),
], ids=lambda v: getattr(v, "name", str(v)))
def test_fixture_scripts_match_the_published_settings(script, preset, micro, ga, seq, world, ds_name):
    spec = read_launch_script(script)
    data = launch_to_scenario_dict(spec, None, gpus="8xa100-80g")
    assert data["model"] == preset
    assert (spec.micro_batch, spec.grad_accum, spec.seq_len, spec.world_size) == (micro, ga, seq, world)
    assert spec.deepspeed_config_path.endswith(ds_name)
    assert data["train"]["attention"] == "flash"  # train_mem.py forces FlashAttention-2
    assert spec.unknown_flags == ()


def test_stage1_stage2_lora_and_qlora_methods():
    stage1 = launch_to_scenario_dict(read_launch_script(MGM_2B, command=1), None, gpus="8xa100-80g")
    assert stage1["train"]["method"] == "freeze" and stage1["train"]["trainable"] == ["projector"]
    stage2 = launch_to_scenario_dict(read_launch_script(MGM_2B), None, gpus="8xa100-80g")
    assert stage2["train"]["method"] == "full" and stage2["train"]["trainable"] == ["llm", "projector"]
    assert stage2["train"]["images_per_sample"] == 1 and stage2["train"]["seq_len"] == 2048
    lora = launch_to_scenario_dict(read_launch_script(LLAVA / "scripts/v1_5/finetune_lora.sh"), None, gpus="8xa100-40g")
    assert lora["train"]["method"] == "lora" and lora["train"]["lora"]["r"] == 128 and lora["train"]["lora"]["alpha"] == 256
    qlora = launch_to_scenario_dict(parse_launch_script(
        "deepspeed llava/train/train.py --lora_enable True --bits 4 --model_name_or_path lmsys/vicuna-7b-v1.5 "
        "--vision_tower openai/clip-vit-large-patch14-336"), None, gpus="1xrtx4090")
    assert qlora["train"]["method"] == "qlora" and qlora["model"] == "llava-1.5-7b"
    assert qlora["train"]["attention"] == "sdpa"  # llava's train.py does not force flash


def test_scenario_dict_loads_and_gpus_count_semantics():
    spec = read_launch_script(MGM_8X7B)
    ds = parse_deepspeed_config(spec.deepspeed_config_path, hidden_size=4096, world_size=6, micro_batch=4, grad_accum=1,
                                bf16=True)
    data = launch_to_scenario_dict(spec, ds, gpus="6xrtx4090", host_ram="256GB")
    assert data["hardware"]["gpus_per_node"] == 6 and data["hardware"]["nodes"] == 1  # --gpus NxTYPE wins
    scn = scenario_from_dict(data)
    assert scn.parallel.zero == 3 and scn.parallel.deepspeed.moe_leaf_modules  # MGM calls set_z3_leaf_modules
    bare = launch_to_scenario_dict(spec, ds, gpus="a100-80g")
    assert (bare["hardware"]["gpus_per_node"], bare["hardware"]["nodes"]) == (8, 4)  # from hostfile_4
    with pytest.raises(VramplanError, match="gives no count"):
        launch_to_scenario_dict(read_launch_script(MGM_2B), None, gpus="rtx4090")
    with pytest.raises(VramplanError, match="needs the GPU model"):
        launch_to_scenario_dict(spec, ds, gpus=None)


def test_model_from_preset_path_local_config_or_error(tmp_path):
    by_id = parse_launch_script("deepspeed train.py --model_name_or_path liuhaotian/llava-v1.5-7b")
    assert launch_to_scenario_dict(by_id, None, gpus="1xa100-80g")["model"] == "llava-1.5-7b"
    folder = tmp_path / "my-model"
    folder.mkdir()
    config = json.loads((Path(vramplan.__file__).parent / "registry/models/llama-2-7b.json").read_text())
    (folder / "config.json").write_text(json.dumps(config))
    local = parse_launch_script("deepspeed train.py --model_name_or_path my-model", base_dir=tmp_path)
    assert launch_to_scenario_dict(local, None, gpus="1xa100-80g")["model"] == str(folder / "config.json")
    unknown = parse_launch_script("deepspeed train.py --model_name_or_path /data/ckpt/step-100", base_dir=tmp_path)
    with pytest.raises(VramplanError, match="cannot tell the model.*pass --model"):
        launch_to_scenario_dict(unknown, None, gpus="1xa100-80g")
    assert launch_to_scenario_dict(unknown, None, gpus="1xa100-80g", model="mistral-7b")["model"] == "mistral-7b"
