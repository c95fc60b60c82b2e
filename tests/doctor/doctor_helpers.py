"""Helpers for the doctor tests: fixture paths and a context builder for one-line commands."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vramplan.adapters.launch_script import parse_launch_script
from vramplan.doctor import build_context
from vramplan.doctor.types import DoctorContext

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MGM = FIXTURES / "mgm"
LLAVA = FIXTURES / "llava"
MGM_2B = MGM / "scripts/gemma/train/stage_1_2_full_gemma_v2b_336_hr_768.sh"
MGM_2B_HD = MGM / "scripts/gemma/train/stage_2_full_gemma_v2b_672_hr_1536.sh"
MGM_7B = MGM / "scripts/llama/train/stage_1_2_full_v7b_336_hr_768.sh"
MGM_7B_HD = MGM / "scripts/llama/train/stage_2_full_v7b_672_hr_1536.sh"
MGM_8X7B = MGM / "scripts/mixtral/train/stage_1_2_full_mixtral_8x7b_336_hr_768.sh"
MGM_8X7B_HD = MGM / "scripts/mixtral/train/stage_2_full_mixtral_8x7b_672_hr_1536.sh"

TRAIN = ("--model_name_or_path lmsys/vicuna-7b-v1.5 --per_device_train_batch_size 1 --gradient_accumulation_steps 1 "
         "--bf16 True --gradient_checkpointing True --attn_implementation flash_attention_2 --model_max_length 2048 "
         "--output_dir out")
"""Training flags of a small, healthy dense run (Llama-2-7B)."""

AUTO = {"train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto", "gradient_accumulation_steps": "auto",
        "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}}


def zero(stage: int, **zero_keys: Any) -> dict[str, Any]:
    """A DeepSpeed dict with every batch/precision key "auto" and these zero_optimization keys."""
    return {**AUTO, "zero_optimization": {"stage": stage, "reduce_bucket_size": "auto", **zero_keys}}


def make_ctx(
    args: str = "",
    ds: Mapping[str, Any] | None = None,
    *,
    launcher: str = "deepspeed train.py",
    gpus: str = "4xa100-80g",
    model: str | None = None,
    host_ram: str | None = "2TB",
    env: Mapping[str, str] | None = None,
    train: str = TRAIN,
) -> DoctorContext:
    """A doctor context for ``launcher train-flags args`` with ``ds`` as its DeepSpeed config."""
    launch = parse_launch_script(f"{launcher} {train} {args}", env=env)
    return build_context(launch, gpus=gpus, deepspeed=ds, model=model, host_ram=host_ram)


