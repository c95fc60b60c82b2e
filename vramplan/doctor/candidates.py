"""Candidate fixes: each a scenario edit plus the matching edits of the user's files.

Every candidate keeps full fine-tuning on the same hardware (the alternatives that change the method or
the GPUs live in ``alternatives.py``). ``cost`` measures how much a candidate changes the run, in tenths:
allocator/bucket/checkpointing/attention switches 10, a fused loss 20, a smaller micro-batch with more
accumulation 20-24 (smaller is more change), ZeRO-3 25, optimizer offload 30, parameter offload 40.
Candidates in the same ``group`` exclude each other (one micro-batch, one offload level). Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from ..core.scenario import Attention, Engine, GradCkpt, Loss, Offload, Optimizer, Scenario
from .rules_deepspeed import DS_ADAMW_BLOCK, ZERO3_KEYS
from .types import Change, DoctorContext

DS_TEMPLATE = {
    "fp16": {"enabled": "auto"},
    "bf16": {"enabled": "auto"},
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": "auto"},
}
"""A DeepSpeed JSON for runs that had none (HF fills every "auto")."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One fix the search may combine with others."""

    id: str
    title: str
    cost: int
    order: int
    """Application order inside a combination (ZeRO-3 before parameter offload)."""
    applies: Callable[[Scenario], bool]
    apply: Callable[[Scenario], Scenario]
    changes: tuple[Change, ...]
    group: str = ""
    note: str = ""


def _train(scn: Scenario, **kw: Any) -> Scenario:
    return replace(scn, train=replace(scn.train, **kw))


def _par(scn: Scenario, **kw: Any) -> Scenario:
    return replace(scn, parallel=replace(scn.parallel, **kw))


def _is_ds(scn: Scenario) -> bool:
    return scn.parallel.engine is Engine.DEEPSPEED


def _micro_applies(scn: Scenario, micro: int) -> bool:
    return scn.train.micro_batch > micro


def _train_micro(scn: Scenario, micro: int, ga: int) -> Scenario:
    return _train(scn, micro_batch=micro, grad_accum=ga)


def _divisors_below(n: int) -> list[int]:
    return [d for d in range(n - 1, 0, -1) if n % d == 0]


def _batch_changes(ctx: DoctorContext, micro: int, ga: int) -> tuple[Change, ...]:
    changes = [Change("script", "per_device_train_batch_size", str(micro)),
               Change("script", "gradient_accumulation_steps", str(ga))]
    ds = ctx.ds
    if ds is not None:
        raw = ds.raw
        if "train_micro_batch_size_per_gpu" in raw and raw["train_micro_batch_size_per_gpu"] != "auto":
            changes.append(Change("ds_config", "train_micro_batch_size_per_gpu", micro))
        if "gradient_accumulation_steps" in raw and raw["gradient_accumulation_steps"] != "auto":
            changes.append(Change("ds_config", "gradient_accumulation_steps", ga))
    return tuple(changes)


def _offload_changes(ctx: DoctorContext, params: bool) -> tuple[Change, ...]:
    changes = [Change("ds_config", "zero_optimization.offload_optimizer", {"device": "cpu", "pin_memory": True})]
    if params:
        changes.append(Change("ds_config", "zero_optimization.offload_param", {"device": "cpu", "pin_memory": True}))
    if ctx.ds is None or not ctx.ds.has_optimizer_block:
        changes.append(Change("ds_config", "optimizer", DS_ADAMW_BLOCK))
    return tuple(changes)


def fix_candidates(ctx: DoctorContext) -> list[Candidate]:
    """Candidates for this context (only those that could apply to some combination)."""
    scn = ctx.scenario
    t = scn.train
    gpu = scn.cluster.gpu
    h2 = scn.model.decoder.hidden_size ** 2
    global_batch = t.micro_batch * t.grad_accum * scn.dp_degree
    out: list[Candidate] = [
        Candidate("expandable_segments", "expandable allocator segments", 10, 0,
                  lambda s: not s.parallel.expandable_segments, lambda s: _par(s, expandable_segments=True),
                  (Change("env", "PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True"),)),
        Candidate("grad_ckpt", "gradient checkpointing on", 10, 1,
                  lambda s: s.train.grad_ckpt is not GradCkpt.FULL, lambda s: _train(s, grad_ckpt=GradCkpt.FULL),
                  (Change("script", "gradient_checkpointing", "True"),)),
        Candidate("flash_attention", "FlashAttention-2", 10, 2,
                  lambda s: s.train.attention is not Attention.FLASH and gpu.flash_attention,
                  lambda s: _train(s, attention=Attention.FLASH),
                  (Change("script", "attn_implementation", "flash_attention_2"),), note="pip install flash-attn"),
        Candidate("smaller_buckets", "reduce bucket sized by HF (hidden^2)", 10, 3,
                  lambda s: _is_ds(s) and s.parallel.zero >= 1 and (s.parallel.deepspeed.reduce_bucket_size or 0) > h2,
                  lambda s: _par(s, deepspeed=replace(s.parallel.deepspeed, reduce_bucket_size=None)),
                  (Change("ds_config", "zero_optimization.reduce_bucket_size", "auto"),)),
        Candidate("chunked_loss", "fused linear cross-entropy (Liger)", 20, 4,
                  lambda s: s.train.loss is not Loss.CHUNKED, lambda s: _train(s, loss=Loss.CHUNKED),
                  (Change("script", "use_liger_kernel", "True"),),
                  note="pip install liger-kernel; MGM/LLaVA model classes may need apply_liger_kernel_to_<arch>()"),
    ]
    for step, micro in enumerate(_divisors_below(t.micro_batch)):
        factor = t.micro_batch // micro
        ga = t.grad_accum * factor
        out.append(Candidate(
            f"micro_batch_{micro}",
            f"micro-batch {t.micro_batch}->{micro} with gradient accumulation {t.grad_accum}->{ga} "
            f"(global batch {global_batch} kept)",
            20 + min(step, 9), 5,
            partial(_micro_applies, micro=micro), partial(_train_micro, micro=micro, ga=ga),
            _batch_changes(ctx, micro, ga), group="micro_batch",
        ))
    stage = scn.parallel.zero
    if _is_ds(scn) and stage < 3:
        out.append(Candidate("zero3", f"ZeRO-{stage} -> ZeRO-3", 25, 6,
                             lambda s: _is_ds(s) and s.parallel.zero < 3, lambda s: _par(s, zero=3), ZERO3_KEYS))
    elif not _is_ds(scn) and scn.parallel.engine in (Engine.SINGLE, Engine.DDP):
        out.append(Candidate(
            "deepspeed_zero3", "DeepSpeed ZeRO-3 instead of " + scn.parallel.engine.value, 30, 6,
            lambda s: not _is_ds(s), lambda s: _par(s, engine=Engine.DEEPSPEED, zero=3),
            (Change("script", "deepspeed", "ds_config.json"), *ZERO3_KEYS),
        ))
    out.append(Candidate(
        "offload_optimizer", "optimizer states to CPU (DeepSpeed CPU Adam)", 30, 7,
        lambda s: _is_ds(s) and s.parallel.zero >= 1 and s.parallel.offload_optimizer is Offload.NONE,
        lambda s: _par(_train(s, optimizer=Optimizer.ADAMW_FUSED), offload_optimizer=Offload.CPU),
        _offload_changes(ctx, params=False), group="offload",
        note="needs host RAM for fp32 master weights and Adam states; slower steps",
    ))
    out.append(Candidate(
        "offload_param", "parameters and optimizer states to CPU (ZeRO-3 offload)", 40, 8,
        lambda s: _is_ds(s) and s.parallel.zero == 3 and s.parallel.offload_param is Offload.NONE,
        lambda s: _par(_train(s, optimizer=Optimizer.ADAMW_FUSED), offload_optimizer=Offload.CPU, offload_param=Offload.CPU),
        _offload_changes(ctx, params=True), group="offload",
        note="needs host RAM for everything but the working layers; much slower steps",
    ))
    return out
