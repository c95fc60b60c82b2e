"""`vramplan doctor` on real launch scripts and configs (tests/fixtures/realworld/README.md for sources).

Each test pins what the parser extracts from a script people actually run (model, micro-batch, gradient
accumulation, sequence length, precision, checkpointing, LoRA, DeepSpeed stage/offload, GPU count) and,
where the model has no preset, the one-line error; the CLI tests check exit codes and that no input here
ever ends in a traceback.
"""

from __future__ import annotations

import pytest
from doctor_helpers import FIXTURES

from vramplan.adapters.launch_script import parse_launch_script, read_launch_script
from vramplan.cli.main import main
from vramplan.core.errors import VramplanError
from vramplan.doctor import build_context, run_doctor, write_fix_files

REAL = FIXTURES / "realworld"
QWEN_VL_FULL = REAL / "qwen_vl/finetune/finetune_ds.sh"
QWEN_VL_QLORA = REAL / "qwen_vl/finetune/finetune_qlora_ds.sh"
QWEN_LORA = REAL / "qwen/finetune/finetune_lora_ds.sh"
MINICPM_FULL = REAL / "minicpm_v/finetune/finetune_ds.sh"
MINICPM_LORA = REAL / "minicpm_v/finetune/finetune_lora.sh"
INTERNVL_FULL = REAL / ("internvl/internvl_chat/shell/internvl2.0/2nd_finetune/"
                        "internvl2_8b_internlm2_7b_dynamic_res_2nd_finetune_full.sh")
FASTCHAT_FSDP = REAL / "fastchat/scripts/train_vicuna_7b.sh"
FASTCHAT_LORA = REAL / "fastchat/scripts/train_lora.sh"
FASTCHAT_SLURM = REAL / "fastchat/scripts/train_vicuna_13b_single_node_slurm.sh"
LMF_DS_ZERO3 = REAL / "llama_factory/examples/lora_multi_gpu/ds_zero3.sh"
LMF_MULTI_NODE = REAL / "llama_factory/examples/lora_multi_gpu/multi_node.sh"
LMF_SINGLE_NODE = REAL / "llama_factory/examples/full_multi_gpu/single_node.sh"
DEEPSEEK_MOE = REAL / "deepseek_moe/finetune_readme.sh"
DEEPSEEK_MOE_QLORA = REAL / "deepseek_moe/finetune_qlora_readme.sh"
ALPACA_LORA = REAL / "alpaca_lora/train_deepspeed.sh"
GAME24 = REAL / "game24_pref/train_pref.sh"
TRL_LORA = REAL / "trl/sft_lora_zero3.sh"


def _scenario(script, gpus, model=None, **kw):
    ctx = build_context(read_launch_script(script), gpus=gpus, model=model, host_ram="1TB", **kw)
    return ctx, ctx.scenario


# -- Qwen / Qwen-VL (torchrun $DISTRIBUTED_ARGS with continuations inside a quoted variable) ------------------

def test_qwen_vl_full_finetune_flags_and_distributed_args_variable():
    spec = read_launch_script(QWEN_VL_FULL)
    assert (spec.launcher, spec.entry) == ("torchrun", "finetune.py")
    assert spec.gpus_per_node == 8 and spec.nodes == 1 and spec.gpu_count_source == "--nproc_per_node 8"
    assert (spec.micro_batch, spec.grad_accum, spec.seq_len) == (1, 16, 2048)
    assert spec.bf16 and not spec.fp16 and spec.gradient_checkpointing
    assert spec.model_path == "Qwen/Qwen-VL-Chat"
    assert spec.deepspeed_config == "finetune/ds_config_zero3.json" and spec.deepspeed_config_path is None
    assert not spec.unknown_flags  # --fix_vit, --lazy_preprocess are known


def test_qwen_vl_without_preset_is_one_line_naming_the_hub_id():
    with pytest.raises(VramplanError) as err:
        run_doctor(script=QWEN_VL_FULL, gpus="8xa100-80g")
    text = str(err.value)
    assert "\n" not in text and "Qwen/Qwen-VL-Chat" in text and "--model Qwen/Qwen-VL-Chat" in text


def test_qwen_vl_missing_zero3_json_names_the_file(tmp_path):
    with pytest.raises(VramplanError, match="finetune/ds_config_zero3.json, which was not found"):
        run_doctor(script=QWEN_VL_FULL, gpus="8xa100-80g", model="qwen2-vl-7b")


def test_qwen_vl_fix_vit_keeps_the_vision_tower_frozen():
    ctx, scn = _scenario(QWEN_VL_FULL, "8xa100-80g", model="qwen2-vl-7b",
                         deepspeed=REAL / "minicpm_v/finetune/ds_config_zero3.json")
    assert scn.train.method.value == "full"
    assert [p.value for p in scn.train.trainable] == ["llm", "projector"]
    assert ctx.ds.zero_stage == 3 and scn.parallel.zero == 3


def test_qwen_vl_use_lora_q_lora_is_qlora_in_fp16():
    spec = read_launch_script(QWEN_VL_QLORA)
    assert spec.args["use_lora"] == "True" and spec.args["q_lora"] == "True"
    assert spec.fp16 and not spec.bf16 and (spec.micro_batch, spec.grad_accum) == (2, 8)
    _, scn = _scenario(QWEN_VL_QLORA, "8xrtx4090", model="qwen2-vl-7b")
    assert scn.train.method.value == "qlora" and scn.train.precision.value == "fp16-mixed"
    assert scn.parallel.zero == 2


def test_qwen_use_lora_is_lora_and_seq_512():
    ctx, scn = _scenario(QWEN_LORA, "8xrtx4090", model="qwen2.5-7b")
    assert scn.train.method.value == "lora" and scn.train.seq_len == 512
    assert scn.train.grad_ckpt.value == "full" and scn.train.precision.value == "bf16-mixed"
    assert ctx.ds.has_optimizer_block and ctx.ds.reduce_bucket_size == 200_000_000


# -- MiniCPM-V (lower-case true/false, --tune_vision/--tune_llm, --use_lora true) -------------------------

def test_minicpm_v_full_and_lora_flags():
    full = read_launch_script(MINICPM_FULL)
    assert full.bf16 and not full.fp16 and full.gradient_checkpointing
    assert (full.micro_batch, full.grad_accum, full.seq_len, full.gpus_per_node) == (2, 1, 2048, 8)
    assert "--tune_vision" not in full.unknown_flags and "--llm_type" not in full.unknown_flags
    _, scn = _scenario(MINICPM_LORA, "8xrtx4090", model="llama-3.1-8b")
    assert scn.train.method.value == "lora" and scn.train.precision.value == "fp16-mixed"


def test_minicpm_v_tune_llm_false_trains_vision_and_projector_only():
    _, scn = _scenario(MINICPM_FULL, "8xa100-80g", model="qwen2-vl-7b")
    assert [p.value for p in scn.train.trainable] == ["llm", "projector", "vision"]
    launch = read_launch_script(MINICPM_FULL)
    frozen_llm = parse_launch_script(launch.text.replace("--tune_llm true", "--tune_llm false"),
                                     base_dir=MINICPM_FULL.parent)
    ctx = build_context(frozen_llm, gpus="8xa100-80g", model="qwen2-vl-7b", host_ram="1TB")
    assert ctx.scenario.train.method.value == "freeze"
    assert [p.value for p in ctx.scenario.train.trainable] == ["projector", "vision"]


# -- InternVL ($((...)) arithmetic, --grad_checkpoint, --max_seq_length, `2>&1 | tee`) --------------------

def test_internvl_arithmetic_gradient_accumulation_and_own_flags():
    spec = read_launch_script(INTERNVL_FULL)
    assert (spec.micro_batch, spec.grad_accum, spec.seq_len) == (4, 4, 4096)  # 128 / 4 / 8
    assert spec.gradient_checkpointing and spec.bf16 and spec.gpus_per_node == 8
    assert spec.deepspeed_config_path and spec.deepspeed_config_path.endswith("internvl_chat/zero_stage1_config.json")
    assert "report_to" in spec.args and spec.args["report_to"] == "tensorboard"
    assert not any(w.startswith("2>") or w == "tee" for w in spec.args.values())
    other_batch = read_launch_script(INTERNVL_FULL, env={"GPUS": "4"})
    assert (other_batch.gpus_per_node, other_batch.grad_accum) == (4, 8)


def test_internvl_freeze_backbone_is_the_vision_tower():
    _, scn = _scenario(INTERNVL_FULL, "8xa100-80g", model="qwen2-vl-7b")
    assert scn.train.method.value == "full"
    assert [p.value for p in scn.train.trainable] == ["llm", "projector"]
    assert scn.parallel.zero == 1 and scn.train.grad_accum == 4


# -- FastChat (FSDP flags, bare --fp16, unset $VAR deepspeed, python -m torch.distributed.run) ------------

def test_fastchat_fsdp_llama1_path_maps_to_llama2_7b_preset():
    ctx, scn = _scenario(FASTCHAT_FSDP, "a100-80g")
    assert ctx.model_ref == "llama-2-7b"
    assert scn.parallel.engine.value == "fsdp" and scn.cluster.gpus_per_node == 16
    assert scn.train.precision.value == "fp16-mixed" and scn.train.grad_accum == 16


def test_fastchat_train_lora_entry_is_lora_and_unset_deepspeed_variable_is_one_line():
    spec = read_launch_script(FASTCHAT_LORA)
    assert spec.gpus_per_node == 6 and spec.deepspeed_config == "$PATH_TO_DEEPSPEED_CONFIG_S2"
    with pytest.raises(VramplanError, match=r"\$PATH_TO_DEEPSPEED_CONFIG_S2, a shell variable"):
        run_doctor(script=FASTCHAT_LORA, gpus="rtx4090")
    ctx, scn = _scenario(FASTCHAT_LORA, "6xrtx4090", deepspeed=REAL / "qwen/finetune/ds_config_zero2.json")
    assert ctx.model_ref == "llama-2-7b" and scn.train.method.value == "lora" and scn.train.lora.r == 8


def test_fastchat_slurm_python_m_torch_distributed_run():
    spec = read_launch_script(FASTCHAT_SLURM)
    assert spec.launcher == "torchrun" and spec.entry == "fastchat/train/train_xformer.py"
    assert spec.gpus_per_node == 16 and spec.nodes is None and "$SLURM_NNODES" in spec.unresolved


# -- LLaMA-Factory (positional YAML config, finetuning_type, accelerate with CUDA_VISIBLE_DEVICES) ----------

def test_llama_factory_yaml_config_supplies_the_flags():
    spec = read_launch_script(LMF_DS_ZERO3)
    assert spec.training_config == "examples/lora_multi_gpu/llama3_lora_sft_ds.yaml"
    assert spec.model_path == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert (spec.micro_batch, spec.grad_accum, spec.seq_len) == (1, 2, 1024)
    assert spec.fp16 and spec.gradient_checkpointing  # LLaMA-Factory turns checkpointing on by default
    assert spec.gpus_per_node == 4 and spec.deepspeed_config_path.endswith("examples/deepspeed/ds_z3_config.json")
    ctx, scn = _scenario(LMF_DS_ZERO3, "rtx4090")
    assert ctx.model_ref == "llama-3.1-8b" and scn.cluster.gpus_per_node == 4
    assert scn.train.method.value == "lora" and scn.train.lora.r == 8 and scn.parallel.zero == 3


def test_llama_factory_fix_dir_puts_yaml_keys_in_the_header_not_on_the_command_line(tmp_path):
    report = run_doctor(script=LMF_DS_ZERO3, gpus="4x8GiB", host_ram="256GB")
    written = write_fix_files(report, tmp_path / "fix")
    script = written[0].read_text()
    assert "in examples/lora_multi_gpu/llama3_lora_sft_ds.yaml" in script
    assert "--deepspeed" not in script.split("deepspeed --include", 1)[1]


def test_llama_factory_cli_flags_and_visible_devices_with_accelerate():
    spec = read_launch_script(LMF_MULTI_NODE)
    assert spec.launcher == "accelerate" and spec.gpus_per_node == 4
    assert spec.gpu_count_source == "CUDA_VISIBLE_DEVICES=0,1,2,3"
    assert any("accelerate config ../accelerate/master_config.yaml not found" in w for w in spec.warnings)
    _, scn = _scenario(LMF_MULTI_NODE, "rtx4090")
    assert scn.train.method.value == "lora" and scn.train.lora.r == 8 and scn.train.seq_len == 1024
    assert scn.train.precision.value == "fp16-mixed" and scn.parallel.engine.value == "ddp"


def test_llama_factory_missing_yaml_is_a_note_not_a_crash():
    spec = read_launch_script(LMF_SINGLE_NODE)
    assert spec.training_config == "examples/full_multi_gpu/llama3_full_sft.yaml"
    assert any("training config examples/full_multi_gpu/llama3_full_sft.yaml not found" in w for w in spec.warnings)
    assert spec.gpus_per_node == 4


def test_llamafactory_cli_train_is_a_launcher(tmp_path):
    (tmp_path / "sft.yaml").write_text("model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nfinetuning_type: full\n"
                                       "per_device_train_batch_size: 2\nbf16: true\ncutoff_len: 4096\n")
    spec = parse_launch_script("FORCE_TORCHRUN=1 NPROC_PER_NODE=4 llamafactory-cli train sft.yaml\n", base_dir=tmp_path)
    assert (spec.launcher, spec.gpus_per_node, spec.micro_batch, spec.seq_len) == ("llamafactory", 4, 2, 4096)
    assert spec.bf16 and spec.gradient_checkpointing
    ctx = build_context(spec, gpus="rtx4090", host_ram="256GB")
    assert ctx.model_ref == "qwen2.5-7b" and ctx.scenario.train.method.value == "full"


# -- DeepSeek-MoE README (cd finetune, placeholders), alpaca-lora (redirections, --micro_batch_size) ---------

def test_deepseek_moe_cd_resolves_the_deepspeed_json_and_placeholder_model_is_one_line():
    spec = read_launch_script(DEEPSEEK_MOE)
    assert spec.workdir == "finetune"
    assert spec.deepspeed_config_path.endswith("deepseek_moe/finetune/configs/ds_config_zero3.json")
    assert (spec.micro_batch, spec.grad_accum, spec.seq_len) == (16, 4, 1024)
    with pytest.raises(VramplanError, match="<your_model_path> is a placeholder"):
        run_doctor(script=DEEPSEEK_MOE, gpus="8xa100-80g")
    ctx, scn = _scenario(DEEPSEEK_MOE, "8xa100-80g", model="deepseek-v2-lite")
    assert scn.train.method.value == "full"  # --use_lora False
    assert ctx.ds.offload_optimizer == "cpu" and ctx.ds.offload_param == "cpu"


def test_deepseek_moe_qlora_bits_4_and_trailing_backslash():
    spec = read_launch_script(DEEPSEEK_MOE_QLORA)
    assert spec.args["quant_type"] == "nf4" and spec.int_flag("bits") == 4 and spec.int_flag("lora_r") == 64
    _, scn = _scenario(DEEPSEEK_MOE_QLORA, "8xa100-80g", model="deepseek-v2-lite",
                       deepspeed=REAL / "qwen/finetune/ds_config_zero2.json")
    assert scn.train.method.value == "qlora"


def test_alpaca_lora_redirections_global_batch_and_base_model():
    spec = read_launch_script(ALPACA_LORA)
    assert spec.launcher == "deepspeed" and spec.gpus_per_node == 2  # --include localhost:1,2
    assert spec.args["group_by_length"] == "True"  # not ">" (the redirection that follows it)
    assert spec.model_path == "../model/llama_7b" and spec.micro_batch == 4 and spec.seq_len == 512
    assert spec.grad_accum_for(2) == 16 and spec.grad_accum_for(1) == 32  # 128 // 4 // world
    ctx, scn = _scenario(ALPACA_LORA, "v100-32g")
    assert ctx.model_ref == "llama-2-7b" and scn.train.method.value == "lora" and scn.train.lora.r == 8
    assert scn.train.precision.value == "fp32"
    assert any(n.startswith("precision: no --bf16/--fp16 flag") for n in ctx.notes)


def test_alpaca_lora_fix_goes_before_the_redirection(tmp_path):
    report = run_doctor(script=ALPACA_LORA, gpus="2xv100-32g", host_ram="256GB")
    script = write_fix_files(report, tmp_path / "fix")[0].read_text()
    lines = script.splitlines()
    tail = next(i for i, line in enumerate(lines) if line.strip().startswith("> alpaca.log"))
    assert lines[tail - 1].strip().startswith("--") and lines[tail - 1].endswith("\\")
    assert not any(line.rstrip().endswith("&") and "--" in line for line in lines)


# -- accelerate configs (alignment-handbook / TRL YAML), loops -------------------------------------------

def test_game24_loop_accelerate_config_and_key_value_flags():
    spec = read_launch_script(GAME24)
    assert spec.launcher == "accelerate" and spec.entry == "fine_tune/pref.py" and spec.workdir == "alignment"
    assert spec.launcher_args["use_deepspeed"] == "true" and spec.launcher_args["zero_stage"] == "3"
    assert spec.launcher_args["offload_param_device"] == "cpu" and spec.launcher_args["num_processes"] == "1"
    assert spec.model_path == "Qwen/Qwen2.5-Math-7B" and (spec.micro_batch, spec.grad_accum_for(8)) == (8, 2)
    assert spec.bf16 and spec.env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    ctx, scn = _scenario(GAME24, "8xa100-80g")
    assert ctx.model_ref == "qwen2.5-7b" and scn.parallel.zero == 3
    assert scn.parallel.offload_param.value == "cpu" and scn.parallel.expandable_segments
    assert scn.train.precision.value == "bf16-mixed"


def test_trl_accelerate_config_deepspeed_and_grad_accum_mismatch():
    spec = read_launch_script(TRL_LORA)
    assert spec.gpus_per_node == 8 and spec.gpu_count_source == "--num_processes 8"
    assert spec.fp16 and not spec.bf16  # mixed_precision: 'fp16' in the accelerate config
    report = run_doctor(script=TRL_LORA, gpus="8xrtx4090", model="qwen2.5-7b", host_ram="256GB")
    scn = report.context.scenario
    assert scn.train.method.value == "lora" and scn.train.lora.r == 32 and scn.parallel.zero == 3
    assert report.context.ds.stage3_gather_16bit_weights_on_model_save
    ds007 = next(f for f in report.findings if f.rule_id == "DS007")
    assert "ds gradient_accumulation_steps=1 vs hf gradient_accumulation_steps=8" in ds007.explanation
    assert any(c.target == "code" and "accelerate config" in str(c.value) for c in ds007.fix.changes)
    assert "DS014" not in {f.rule_id for f in report.findings}


# -- shell forms seen in real scripts -----------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("for lr in 1e-5 2e-5; do deepspeed train.py --learning_rate $lr --per_device_train_batch_size 2; done",
     {"learning_rate": "1e-5", "per_device_train_batch_size": "2"}),
    ("if [ -n \"$X\" ]; then torchrun --nproc_per_node 2 train.py --bf16 True; fi", {"bf16": "True"}),
    ("(cd src && deepspeed train.py --gradient_checkpointing &> log.txt)", {"gradient_checkpointing": "True"}),
    ("nohup deepspeed train.py --model_max_length 4096 >> train.log 2>&1 &", {"model_max_length": "4096"}),
    ("N=8\nGA=$(( 64 / N / 2 ))\ntorchrun train.py --gradient_accumulation_steps $GA", {"gradient_accumulation_steps": "4"}),
])
def test_shell_forms(text, expected):
    spec = parse_launch_script(text)
    for key, value in expected.items():
        assert spec.args[key] == value
    assert not any(v in (">", ">>", "2>&1", "&>") for v in spec.args.values())


def test_unknown_arithmetic_stays_one_unresolved_word():
    spec = parse_launch_script("GA=$((TOTAL / 8))\ndeepspeed train.py --gradient_accumulation_steps $GA\n")
    assert spec.args["gradient_accumulation_steps"] == "$((TOTAL / 8))"
    with pytest.raises(VramplanError, match="gradient_accumulation_steps"):
        _ = spec.grad_accum


@pytest.mark.parametrize("script, extra, code", [
    (QWEN_VL_FULL, ["--gpus", "8xa100-80g"], 2),
    (QWEN_VL_QLORA, ["--gpus", "8xrtx4090", "--model", "qwen2-vl-7b"], 0),
    (MINICPM_LORA, ["--gpus", "8xrtx4090", "--model", "llama-3.1-8b"], 1),
    (INTERNVL_FULL, ["--gpus", "8xa100-80g", "--model", "llama-2-7b"], 0),
    (FASTCHAT_LORA, ["--gpus", "rtx4090"], 2),
    (LMF_DS_ZERO3, ["--gpus", "rtx4090"], 0),
    (DEEPSEEK_MOE_QLORA, ["--gpus", "8xa100-80g", "--model", "deepseek-v2-lite"], 2),
    (GAME24, ["--gpus", "8xa100-80g", "--json"], 1),
])
def test_cli_exit_codes_and_one_line_errors(script, extra, code, capsys):
    assert main(["doctor", "--script", str(script), *extra]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("vramplan: error: ")


def test_fix_list_header_names_the_method_it_keeps():
    from vramplan.report.doctor_text import render_doctor

    lora = render_doctor(run_doctor(script=QWEN_LORA, gpus="2xrtx3090", model="qwen2.5-7b"))
    assert "Fixes that keep your training method (lora) on 2x" in lora
    assert "Fixes that keep full fine-tuning" not in lora
    full = render_doctor(run_doctor(script=MINICPM_FULL, gpus="4xrtx4090", model="qwen2.5-7b"))
    assert "Fixes that keep full fine-tuning on 4x" in full
