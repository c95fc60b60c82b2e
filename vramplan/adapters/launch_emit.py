"""Scenario -> a bash launch script in the HF Trainer / MGM style.

Owns the launcher line (``deepspeed`` for DeepSpeed plans, ``accelerate launch`` for FSDP, ``torchrun``
for DDP, ``python`` for one GPU), the training flags HF ``TrainingArguments`` and the MGM/LLaVA
``train.py`` understand (``--per_device_train_batch_size``, ``--gradient_accumulation_steps``,
``--gradient_checkpointing``, ``--bf16``, ``--deepspeed``, ``--model_max_length``, ``--optim``,
``--lora_enable/--lora_r/--bits``), and the environment the hardware and the plan need:

- ``NCCL_P2P_DISABLE=1`` on GPUs without peer-to-peer (RTX 3090/40xx/50xx; NCCL hangs or corrupts
  data with P2P on: nccl-tests #117, engine-internals.md §8-§9);
- ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` when the plan's estimate assumes it;
- ``ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES`` for MoE models under ZeRO-3: HF Trainer prepares
  DeepSpeed through accelerate, whose ``DeepSpeedPlugin.set_moe_leaf_modules`` then calls
  ``deepspeed.utils.set_z3_leaf_modules`` (accelerate utils/dataclasses.py; DeepSpeed >= 0.14), plus a
  comment with the same call for training code that does not go through accelerate.

The MGM/LLaVA entry point ``train_mem.py`` forces FlashAttention-2 and rejects unknown flags, so
``--attn_implementation`` is only passed to other scripts. Paths of the files written next to the
script are written as absolute paths when the caller knows the folder (``files_dir``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from ..core.model import Part
from ..core.scenario import Attention, Engine, GradCkpt, Method, Offload, Optimizer, Precision, Scenario

DS_CONFIG_NAME = "ds_config.json"
ACCELERATE_CONFIG_NAME = "accelerate_config.yaml"
ACCELERATOR_CONFIG_NAME = "accelerator_config.json"
SCENARIO_NAME = "scenario.yaml"
LAUNCH_NAME = "launch.sh"

OPTIM_FLAG = {
    Optimizer.ADAMW: "adamw_torch",
    Optimizer.ADAMW_FUSED: "adamw_torch_fused",
    Optimizer.ADAMW_8BIT: "adamw_bnb_8bit",
    Optimizer.PAGED_ADAMW_8BIT: "paged_adamw_8bit",
    Optimizer.ADAFACTOR: "adafactor",
    Optimizer.SGD: "sgd",
}
ATTN_FLAG = {Attention.FLASH: "flash_attention_2", Attention.SDPA: "sdpa", Attention.EAGER: "eager"}


def entry_point(scn: Scenario) -> str:
    """Training script: MGM's / LLaVA's ``train_mem.py`` (FlashAttention-2) or ``train.py``; else ``train.py``."""
    kind = scn.model.model_type.lower()
    family = "mgm" if kind.startswith("mgm") else "llava" if kind.startswith("llava") else ""
    if not family:
        return "train.py"
    return f"{family}/train/{'train_mem.py' if scn.train.attention is Attention.FLASH else 'train.py'}"


def moe_module_path(block_class: str, model_type: str) -> str:
    """transformers module of an MoE block class (``MixtralSparseMoeBlock`` -> ``...mixtral.modeling_mixtral``)."""
    stem = re.sub(r"(SparseMoeBlock|SparseMoEBlock|MoeBlock|MoE|Moe)$", "", block_class) or model_type
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", stem).lower()
    return f"transformers.models.{snake}.modeling_{snake}"


def needs_accelerator_config(scn: Scenario) -> bool:
    """FSDP with gradient accumulation: sync every micro-batch so gradients stay sharded, as estimated.

    HF Trainer otherwise wraps all but the last micro-batch in ``no_sync``, and FSDP then accumulates
    unsharded gradients (transformers trainer.py training loop; torch FSDP ``no_sync`` docs).
    """
    return scn.parallel.engine in (Engine.FSDP, Engine.FSDP2) and scn.train.grad_accum > 1


def environment(scn: Scenario) -> list[tuple[str, str, str]]:
    """(variable, value, why) the plan needs."""
    out: list[tuple[str, str, str]] = []
    gpu = scn.cluster.gpu
    if not gpu.p2p and scn.cluster.world_size > 1:
        out.append(("NCCL_P2P_DISABLE", "1", (f"{gpu.display_name} has no peer-to-peer: NCCL hangs or corrupts data "
                    "with P2P on (nccl-tests #117)")))
    if scn.parallel.expandable_segments:
        out.append(("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True",
                    "less allocator fragmentation; the estimate assumes it"))
    if moe_zero3(scn):
        out.append(("ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES", scn.model.moe_block_class,
                    "HF Trainer (via accelerate) calls deepspeed.utils.set_z3_leaf_modules for this class"))
    return out


def moe_zero3(scn: Scenario) -> bool:
    """An MoE model under ZeRO-3 with leaf modules (the estimate gathers whole MoE blocks)."""
    p = scn.parallel
    return (scn.model.is_moe and p.engine is Engine.DEEPSPEED and p.zero == 3 and p.deepspeed.moe_leaf_modules
            and bool(scn.model.moe_block_class))


def _launcher(scn: Scenario, script: str, files_dir: str) -> list[str]:
    cl, engine = scn.cluster, scn.parallel.engine
    if engine is Engine.DEEPSPEED:
        words = ["deepspeed"]
        if cl.nodes > 1:
            words += ["--num_nodes", str(cl.nodes), "--hostfile", "hostfile"]
        return words + ["--num_gpus", str(cl.gpus_per_node), script]
    if engine in (Engine.FSDP, Engine.FSDP2):
        return ["accelerate", "launch", "--config_file", _join(files_dir, ACCELERATE_CONFIG_NAME), script]
    if engine is Engine.DDP:
        words = ["torchrun", "--nproc_per_node", str(cl.gpus_per_node)]
        if cl.nodes > 1:
            words += ["--nnodes", str(cl.nodes)]
        return words + [script]
    return ["python", script]


def _join(files_dir: str, name: str) -> str:
    return f"{files_dir.rstrip('/')}/{name}" if files_dir else name


def training_flags(scn: Scenario, model_path: str, output_dir: str, files_dir: str = "") -> list[tuple[str, str]]:
    """(flag, value) pairs of the training script; ``files_dir`` prefixes the files written with the script."""
    t, p = scn.train, scn.parallel
    flags: list[tuple[str, str]] = []
    if p.engine is Engine.DEEPSPEED:
        flags.append(("--deepspeed", _join(files_dir, DS_CONFIG_NAME)))
    flags.append(("--model_name_or_path", model_path))
    if scn.model.is_vlm and t.method is Method.FREEZE and Part.LLM not in t.trainable and Part.PROJECTOR in t.trainable:
        flags.append(("--tune_mm_mlp_adapter", "True"))
    if t.method in (Method.LORA, Method.QLORA):
        flags += [("--lora_enable", "True"), ("--lora_r", str(t.lora.r)), ("--lora_alpha", str(t.lora.alpha)),
                  ("--lora_dropout", str(t.lora.dropout))]
        if t.method is Method.QLORA:
            flags += [("--bits", "4"), ("--double_quant", "True"), ("--quant_type", "nf4")]
    flags += [
        ("--per_device_train_batch_size", str(t.micro_batch)),
        ("--gradient_accumulation_steps", str(t.grad_accum)),
        ("--gradient_checkpointing", "True" if t.grad_ckpt is not GradCkpt.NONE else "False"),
        ("--bf16", "True" if t.precision is Precision.BF16_MIXED else "False"),
        ("--fp16", "True" if t.precision is Precision.FP16_MIXED else "False"),
    ]
    cc = scn.cluster.gpu.compute_capability
    try:
        ampere = float(cc) >= 8.0
    except ValueError:
        ampere = False
    if ampere:
        flags.append(("--tf32", "True"))
    flags.append(("--model_max_length", str(t.seq_len)))
    if not entry_point(scn).endswith("train_mem.py"):
        flags.append(("--attn_implementation", ATTN_FLAG[t.attention]))
    ds_optimizer = p.engine is Engine.DEEPSPEED and p.offload_optimizer is not Offload.NONE
    if not ds_optimizer:
        flags.append(("--optim", OPTIM_FLAG[t.optimizer]))
    if p.engine is Engine.DEEPSPEED:
        flags.append(("--max_grad_norm", "1.0"))
    if needs_accelerator_config(scn):
        flags.append(("--accelerator_config", _join(files_dir, ACCELERATOR_CONFIG_NAME)))
    flags.append(("--output_dir", output_dir))
    return flags


def emit_launch_script(
    scn: Scenario,
    model_path: str,
    *,
    header: Sequence[str] = (),
    notes: Sequence[str] = (),
    output_dir: str = "./checkpoints/vramplan-plan",
    files_dir: str = "",
) -> str:
    """The launch script text (module docstring). ``header`` lines (expected memory, step time) and
    ``notes`` (plan requirements) become comments at the top; ``files_dir`` is where the configs are
    written (an absolute path, so that the script runs from the training repository's root)."""
    lines = ["#!/usr/bin/env bash", "# Written by vramplan (vramplan plan --emit / vramplan emit)."]
    lines += [f"# {h}" for h in header]
    lines.append(f"# Files next to this script: {SCENARIO_NAME} (vramplan estimate {SCENARIO_NAME} reproduces the "
                 "numbers)" + (f", {DS_CONFIG_NAME}" if scn.parallel.engine is Engine.DEEPSPEED else "")
                 + (f", {ACCELERATE_CONFIG_NAME}" if scn.parallel.engine in (Engine.FSDP, Engine.FSDP2) else "")
                 + (f", {ACCELERATOR_CONFIG_NAME}" if needs_accelerator_config(scn) else "") + ".")
    lines.append(f"# Run it from the root of the training code ({entry_point(scn)} is relative to it) and pass "
                 "your data flags as arguments: bash launch.sh --data_path ... --image_folder ...")
    for note in notes:
        lines.append(f"# NOTE: {note}")
    if scn.train.precision is Precision.BF16_PURE:
        lines.append("# NOTE: pure bf16: load the model with torch_dtype=torch.bfloat16 (no fp32 master weights); "
                     "--bf16 stays False so that autocast does not keep fp32 copies.")
    if scn.cluster.nodes > 1 and scn.parallel.engine is Engine.DEEPSPEED:
        lines.append(f"# NOTE: write a DeepSpeed hostfile ('<host> slots={scn.cluster.gpus_per_node}' per node).")
    lines += ["", "set -euo pipefail", ""]
    for name, value, why in environment(scn):
        lines.append(f"# {why}")
        lines.append(f"export {name}={value}")
    if moe_zero3(scn):
        cls = scn.model.moe_block_class
        module = moe_module_path(cls, scn.model.model_type)
        lines += [
            f"# MoE under ZeRO-3: gather each {cls} as one unit, or ranks hang (DeepSpeed #4808; needs",
            "# DeepSpeed >= 0.13). MGM's train.py does it; other training code, right after from_pretrained:",
            "#   import deepspeed",
            f"#   from {module} import {cls}",
            f"#   deepspeed.utils.set_z3_leaf_modules(model, [{cls}])",
        ]
    lines.append("")
    words = _launcher(scn, entry_point(scn), files_dir)
    cmd = " ".join(shlex.quote(w) for w in words) + " \\"
    body = [cmd]
    for flag, value in training_flags(scn, model_path, output_dir, files_dir):
        body.append(f"    {flag} {shlex.quote(value)} \\")
    body.append('    "$@"')
    lines += body
    return "\n".join(lines) + "\n"
