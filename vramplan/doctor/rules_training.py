"""Doctor rules on the training flags (engine-internals.md §5, §6, §9).

TR001-TR006: gradient checkpointing, FlashAttention, the logits/cross-entropy spike, eval logits
accumulation, DDP with MoE, allocator fragmentation. Where a rule quotes a saving it is the estimator
run on the scenario with that one change. Pure.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..core.estimate import estimate_scenario
from ..core.scenario import Attention, Engine, GradCkpt, Loss
from ..core.units import GiB
from . import evidence as ev
from ._registry import gib, rule
from .types import Change, DoctorContext, Finding, Fix, Rule, Severity


def _saving(ctx: DoctorContext, **train_changes: Any) -> int:
    """Device bytes saved by changing ``train`` fields (estimator on the modified scenario)."""
    scn = ctx.scenario
    alt = estimate_scenario(replace(scn, train=replace(scn.train, **train_changes)))
    return ctx.estimate.device_used_bytes - alt.device_used_bytes


def _matters(ctx: DoctorContext, saving: int) -> bool:
    return not ctx.estimate.fits_gpu or saving >= ctx.estimate.usable_bytes // 10


@rule("TR001", Severity.WARNING, "gradient checkpointing is off",
      "Without checkpointing every decoder layer keeps all its activations until backward; HF's checkpointing keeps "
      "one hidden state per layer and recomputes a layer at a time (Korthikanti et al. 2022).",
      ev.TF_GC_DOCS, ev.KORTHIKANTI)
def no_grad_ckpt(ctx: DoctorContext, r: Rule) -> Finding | None:
    if ctx.scenario.train.grad_ckpt is not GradCkpt.NONE:
        return None
    saving = _saving(ctx, grad_ckpt=GradCkpt.FULL)
    return r.finding(f"Turning it on would lower the peak by {gib(saving)} per GPU (about 30% more compute).",
                     Fix("turn on gradient checkpointing", (Change("script", "gradient_checkpointing", "True"),)),
                     severity=None if _matters(ctx, saving) else Severity.INFO)


@rule("TR002", Severity.WARNING, "attention is not FlashAttention",
      "Eager attention stores the softmax of every head (O(s^2) per layer); SDPA/FlashAttention-2 keep O(s). "
      "FlashAttention-2 needs sm80+ (Ampere or newer).", ev.FLASH_ATTENTION_2, ev.TF_FA2_DOCS)
def no_flash(ctx: DoctorContext, r: Rule) -> Finding | None:
    scn = ctx.scenario
    impl = scn.train.attention
    if impl is Attention.FLASH:
        return None
    gpu = scn.cluster.gpu
    if not gpu.flash_attention:
        if impl is not Attention.EAGER:
            return None
        saving = _saving(ctx, attention=Attention.SDPA)
        return r.finding(f"{gpu.display_name} cannot run FlashAttention-2, but SDPA would save {gib(saving)} per GPU "
                         "over eager attention.",
                         Fix("use SDPA attention", (Change("script", "attn_implementation", "sdpa"),)))
    saving = _saving(ctx, attention=Attention.FLASH)
    severity = None if impl is Attention.EAGER or _matters(ctx, saving) else Severity.INFO
    return r.finding(f"The run uses {impl.value} attention; FlashAttention-2 would lower the peak by {gib(saving)} "
                     "per GPU and is faster.",
                     Fix("use FlashAttention-2 (pip install flash-attn)",
                         (Change("script", "attn_implementation", "flash_attention_2"),)),
                     severity=severity)


@rule("TR003", Severity.WARNING, "logits and cross-entropy dominate the peak",
      "HF causal-LM losses upcast the full logits to fp32: about 10 x tokens x vocab bytes at the end of forward and "
      "12 x tokens x vocab at the start of backward; with checkpointing on this is often the step's peak. "
      "Liger's fused linear cross-entropy never materialises them.", ev.LIGER_KERNEL, ev.KORTHIKANTI)
def logits_spike(ctx: DoctorContext, r: Rule) -> Finding | None:
    scn = ctx.scenario
    if scn.train.loss is Loss.CHUNKED:
        return None
    logits = max(p.breakdown["activations/logits_loss"] for p in ctx.estimate.phases)
    if logits < GiB or logits * 5 < ctx.estimate.device_used_bytes:
        return None
    tokens = scn.train.tokens_per_micro_batch
    vocab = scn.model.decoder.vocab_size
    saving = _saving(ctx, loss=Loss.CHUNKED)
    return r.finding(
        f"micro-batch {scn.train.micro_batch} x {scn.train.seq_len} tokens = {tokens:,} tokens x vocab {vocab:,}: "
        f"the logits/loss take {gib(logits)} per GPU. A fused linear cross-entropy would save {gib(saving)}; so "
        "would a smaller micro-batch (see the ranked fixes).",
        Fix("fused linear cross-entropy (pip install liger-kernel)", (
            Change("script", "use_liger_kernel", "True"),
            Change("code", "liger", "custom model classes (MGM/LLaVA) may need liger_kernel.transformers."
                   "apply_liger_kernel_to_<arch>() before the model is built"),
        )),
        severity=None if not ctx.estimate.fits_gpu else Severity.INFO,
    )


@rule("TR004", Severity.INFO, "evaluation accumulates logits on the GPU",
      "Trainer.evaluate keeps every batch's logits on the GPU until eval_accumulation_steps moves them to the CPU; "
      "with compute_metrics on a causal LM that is batch x seq x vocab floats per step, and eval OOMs while "
      "training fits (transformers #12878, #15466). preprocess_logits_for_metrics (e.g. argmax) shrinks them.",
      ev.TF_ISSUE_12878, ev.TF_ISSUE_15466)
def eval_logits(ctx: DoctorContext, r: Rule) -> Finding | None:
    launch = ctx.launch
    if launch is None or launch.flag("eval_accumulation_steps"):
        return None
    strategy = (launch.flag("eval_strategy") or launch.flag("evaluation_strategy") or "no").strip().lower()
    if strategy == "no" and not launch.bool_flag("do_eval"):
        return None
    batch = launch.int_flag("per_device_eval_batch_size", 8) or 8
    per_step = batch * ctx.scenario.train.seq_len * ctx.scenario.model.decoder.vocab_size * 4
    return r.finding(f"Evaluation is on ({strategy}) with per_device_eval_batch_size {batch}: {gib(per_step)} of fp32 "
                     "logits per eval step stay on the GPU and accumulate.",
                     Fix("move eval logits to the CPU every step", (
                         Change("script", "eval_accumulation_steps", "1"),
                         Change("code", "preprocess_logits_for_metrics",
                                "pass preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1) to the Trainer"),
                     )))


@rule("TR005", Severity.WARNING, "DDP with an MoE model and find_unused_parameters off",
      "Experts that receive no tokens produce no gradients; DDP then fails with 'Expected to have finished reduction "
      "in the prior iteration'. HF Trainer turns find_unused_parameters off when gradient checkpointing is on.",
      ev.PT_DDP_DOCS, ev.TF_TRAINING_ARGS)
def ddp_moe(ctx: DoctorContext, r: Rule) -> Finding | None:
    scn = ctx.scenario
    if scn.parallel.engine is not Engine.DDP or not scn.model.is_moe or ctx.world < 2:
        return None
    if ctx.launch is not None and ctx.launch.bool_flag("ddp_find_unused_parameters"):
        return None
    return r.finding("The MoE model trains under plain DDP without --ddp_find_unused_parameters True.",
                     Fix("let DDP skip unused expert parameters", (Change("script", "ddp_find_unused_parameters", "True"),)))


@rule("TR006", Severity.INFO, "allocator fragmentation without expandable_segments",
      "Padded-to-longest batches and ZeRO-3 gathers leave reserved-but-unused blocks in PyTorch's caching "
      "allocator; PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True maps memory into growing segments instead.",
      ev.PT_CUDA_ALLOC_CONF)
def fragmentation(ctx: DoctorContext, r: Rule) -> Finding | None:
    scn = ctx.scenario
    if scn.parallel.expandable_segments:
        return None
    slack = ctx.estimate.peak.breakdown["overhead/allocator"]
    if slack < GiB:
        return None
    alt = estimate_scenario(replace(scn, parallel=replace(scn.parallel, expandable_segments=True)))
    saving = ctx.estimate.device_used_bytes - alt.device_used_bytes
    return r.finding(f"The estimate holds {gib(slack)} of allocator slack at the peak; expandable segments would "
                     f"recover about {gib(saving)}.",
                     Fix("expandable allocator segments", (Change("env", "PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True"),)),
                     severity=Severity.WARNING if _matters(ctx, saving) and not ctx.estimate.fits_gpu else None)
