"""Doctor rules for ZeRO-3, offload and checkpoint saving (engine-internals.md §2, §5, §9).

DS011-DS018: MoE without leaf modules, MGM's DeepSpeed pin, non-reentrant checkpointing with frozen
weights, 16-bit consolidation at save, the ineffective ``activation_checkpointing`` block, NVMe swap
buffers, pinned host memory, ZeRO++ hpZ / MiCS. Pure.
"""

from __future__ import annotations

import json

from ..core.model import Part
from . import evidence as ev
from ._registry import gib, rule
from .types import Change, DoctorContext, Finding, Fix, Rule, Severity

NVME_SUB_GROUP = 100_000_000
OPTIMIZER_SWAP_BUFFERS = 4
"""optimizer_utils.py pins buffer_count (4) x largest sub-group x 4 B per rank."""


def _hf_training(ctx: DoctorContext) -> bool:
    """The launch runs an HF-Trainer style script (TrainingArguments flags present)."""
    return ctx.launch is not None and any(
        f in ctx.launch.args for f in ("per_device_train_batch_size", "output_dir", "gradient_checkpointing", "deepspeed"))


@rule("DS011", Severity.WARNING, "MoE model under ZeRO-3 without leaf modules",
      "transformers 4.x MoE blocks call only the experts that got tokens; ZeRO-3 hooks then gather different "
      "parameters on different ranks and the run hangs or times out in NCCL (DeepSpeed #4808, LLaMA-Factory #2315). "
      "deepspeed.utils.set_z3_leaf_modules(model, [BlockClass]) (DeepSpeed >= 0.13, PR #4966) gathers the whole "
      "block at once; transformers does not call it, accelerate does when ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES "
      "is set.", ev.DS_ISSUE_4808, ev.DS_PR_4966, ev.LLAMA_FACTORY_2315, ev.ACCELERATE_MOE_LEAF)
def moe_without_leaf(ctx: DoctorContext, r: Rule) -> Finding | None:
    from ..adapters._launch_scenario import calls_z3_leaf_modules

    if ctx.zero_stage != 3 or not ctx.scenario.model.is_moe:
        return None
    if ctx.launch is not None and calls_z3_leaf_modules(ctx.launch):
        return None
    block = ctx.scenario.model.moe_block_class or "<the MoE block class>"
    entry = ctx.launch.entry if ctx.launch is not None else "the training script"
    return r.finding(
        f"{entry} is not known to call set_z3_leaf_modules for {block}; with ZeRO-3 the experts are gathered one "
        "by one in data-dependent order (hang risk). With the leaf module set, a whole block (all experts) is "
        "gathered at once, which the estimate already assumes.",
        Fix(f"declare {block} a ZeRO-3 leaf module", (
            Change("env", "ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES", block),
            Change("code", "set_z3_leaf_modules",
                   f"after from_pretrained: deepspeed.utils.set_z3_leaf_modules(model, [{block}])"),
        )),
    )


@rule("DS012", Severity.INFO, "MGM's MoE training needs DeepSpeed >= 0.13",
      "MGM's train.py calls deepspeed.utils.set_z3_leaf_modules for MixtralSparseMoeBlock, which exists from "
      "DeepSpeed 0.13.0 (PR #4966; the leaf reduce-scatter fix PR #5008 is in 0.13.2), while MGM's pyproject pins "
      "deepspeed==0.11.1.", ev.MGM_PYPROJECT, ev.MGM_TRAIN_PY, ev.DS_PR_4966, ev.DS_PR_5008)
def mgm_deepspeed_pin(ctx: DoctorContext, r: Rule) -> Finding | None:
    launch = ctx.launch
    if launch is None or ctx.zero_stage != 3 or not ctx.scenario.model.is_moe:
        return None
    entry = launch.entry.replace("\\", "/").lower()
    if "mgm/" not in entry and "minigemini/" not in entry:
        return None
    return r.finding("With MGM's pinned deepspeed==0.11.1 the leaf-module call fails (AttributeError); install a "
                     "DeepSpeed that has it.",
                     Fix("upgrade DeepSpeed", (Change("code", "deepspeed", "pip install 'deepspeed>=0.13.2'"),)))


def _reentrant_setting(ctx: DoctorContext) -> bool | None:
    """use_reentrant from --gradient_checkpointing_kwargs (None: not given)."""
    text = ctx.flag("gradient_checkpointing_kwargs")
    if not text:
        return None
    try:
        value = json.loads(text).get("use_reentrant")
        return None if value is None else bool(value)
    except (ValueError, AttributeError):
        low = text.replace(" ", "").lower()
        return False if "use_reentrant\":false" in low or "use_reentrant:false" in low else None


@rule("DS013", Severity.WARNING, "ZeRO-3 + non-reentrant gradient checkpointing with frozen weights",
      "Non-reentrant checkpointing checks that recomputed tensors match the forward's; ZeRO-3 releases frozen "
      "parameters to shape [0] between uses, so recomputation fails with 'CheckpointError: Recomputed values ... "
      "shape [N] vs [0]' (transformers #47254, TRL #2514; fixed in DeepSpeed PR #8148). transformers 5.x uses "
      "non-reentrant checkpointing by default.", ev.TF_ISSUE_47254, ev.TRL_ISSUE_2514, ev.DS_PR_8148)
def nonreentrant_frozen(ctx: DoctorContext, r: Rule) -> Finding | None:
    scn = ctx.scenario
    if ctx.zero_stage != 3 or scn.train.grad_ckpt.value == "none" or scn.trains(Part.LLM):
        return None
    reentrant = _reentrant_setting(ctx)
    if reentrant is True:
        return None
    fix = Fix("use reentrant checkpointing", (Change("script", "gradient_checkpointing_kwargs", '{"use_reentrant": true}'),))
    method = scn.train.method.value
    if reentrant is False:
        return r.finding(f"The LLM's weights are frozen ({method}) inside checkpointed layers and the script asks for "
                         "use_reentrant=False: expect the CheckpointError above on DeepSpeed without PR #8148.", fix)
    return r.finding(f"The LLM's weights are frozen ({method}) inside checkpointed layers and use_reentrant is not "
                     "set: fine with transformers 4.x (reentrant by default), fails with transformers >= 5 unless "
                     "DeepSpeed has PR #8148.", fix, severity=Severity.INFO)


@rule("DS014", Severity.WARNING, "ZeRO-3 checkpoint saving: 16-bit consolidation",
      "stage3_gather_16bit_weights_on_model_save=true gathers a full 16-bit state dict into rank 0's host RAM at "
      "every save (2 B x parameters; transformers #12587 'OOM during saving step'); false makes HF Trainer save "
      "no usable weights (transformers PR #34524; use zero_to_fp32.py).", ev.TF_ISSUE_12587, ev.TF_PR_34524,
      ev.DS_ENGINE)
def gather16_on_save(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None or ds.zero_stage != 3:
        return None
    if not ds.stage3_gather_16bit_weights_on_model_save:
        return r.finding("Saving with HF Trainer writes placeholder weights; you would need zero_to_fp32.py on the "
                         "DeepSpeed checkpoint.",
                         Fix("consolidate 16-bit weights at save",
                             (Change("ds_config", "zero_optimization.stage3_gather_16bit_weights_on_model_save", True),)))
    need = 2 * ctx.scenario.model.num_params
    if need * 4 < ctx.host_ram_bytes:
        return None
    assumed = " (assumed; pass --host-ram)" if ctx.host_ram_assumed else ""
    return r.finding(f"Each save gathers {gib(need)} of 16-bit weights on rank 0's host, next to the training "
                     f"processes, with {gib(ctx.host_ram_bytes)} of host RAM per node{assumed}.",
                     Fix("save sharded and consolidate offline",
                         (Change("ds_config", "zero_optimization.stage3_gather_16bit_weights_on_model_save", False),
                          Change("code", "zero_to_fp32", "after training: python zero_to_fp32.py <checkpoint> <out>"))))


@rule("DS015", Severity.INFO, "DeepSpeed activation_checkpointing block has no effect on HF models",
      "The JSON's activation_checkpointing section (partition_activations, cpu_checkpointing) only configures "
      "deepspeed.checkpointing, which HF models do not call; they use torch.utils.checkpoint via "
      "--gradient_checkpointing.", ev.DS_ACTIVATION_CKPT_DOCS, ev.TF_GC_DOCS)
def ds_activation_checkpointing(ctx: DoctorContext, r: Rule) -> Finding | None:
    if ctx.ds is None or not ctx.ds.activation_checkpointing_present or not _hf_training(ctx):
        return None
    changes = [Change("ds_config", "activation_checkpointing", remove=True)]
    if ctx.scenario.train.grad_ckpt.value == "none":
        changes.append(Change("script", "gradient_checkpointing", "True"))
    return r.finding(f"{ctx.ds.source} configures activation_checkpointing, which an HF Trainer run ignores.",
                     Fix("use HF's gradient checkpointing instead", tuple(changes)))


@rule("DS016", Severity.ERROR, "NVMe offload buffers too small or too large",
      "The NVMe parameter swapper asserts that each swapped partition fits offload_param.buffer_size (default 1e8 "
      "elements); the optimizer swapper pins 4 x the largest sub-group x 4 B of host memory per rank "
      "(16 GB with sub_group_size 1e9).", ev.DS_PARAM_SWAPPER, ev.DS_OPTIMIZER_SWAPPER)
def nvme_buffers(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None or "nvme" not in (ds.offload_param, ds.offload_optimizer):
        return None
    dec = ctx.scenario.model.decoder
    largest = max(dec.embedding_numel, dec.lm_head_numel, max(
        (lin.weight_numel for lin in dec.layer_linears(dec.moe_layers[0] if dec.moe_layers else 0)), default=0))
    per_rank = -(-largest // ctx.world)
    if ds.offload_param == "nvme" and per_rank >= ds.offload_param_buffer_size:
        size = -(-(per_rank + 1) // 10_000_000) * 10_000_000
        return r.finding(f"The largest parameter ({largest:,} elements) gives {per_rank:,} elements per rank, over "
                         f"offload_param.buffer_size={ds.offload_param_buffer_size:,}: DeepSpeed asserts at start.",
                         Fix("enlarge the swap buffer", (Change("ds_config", "zero_optimization.offload_param.buffer_size", size),)))
    if ds.offload_optimizer == "nvme" and ds.sub_group_size > NVME_SUB_GROUP:
        t_shard = -(-ctx.estimate.params.rank_trainable // ctx.world)
        pinned = OPTIMIZER_SWAP_BUFFERS * min(ds.sub_group_size, t_shard) * 4
        return r.finding(f"sub_group_size={ds.sub_group_size:.3g} makes the optimizer swapper pin {gib(pinned)} of host "
                         "memory per rank.",
                         Fix("smaller sub-groups for NVMe", (Change("ds_config", "zero_optimization.sub_group_size", NVME_SUB_GROUP),)),
                         severity=Severity.WARNING)
    return None


@rule("DS017", Severity.WARNING, "pinned offload buffers larger than the host can hold",
      "pin_memory=true allocates offloaded states in page-locked memory through PyTorch's CachingHostAllocator, "
      "which rounds every block up to a power of two (pytorch #95823): up to ~2x the nominal size, never swappable.",
      ev.PT_ISSUE_95823, ev.DS_OFFLOAD_CONFIG)
def pinned_host(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None or not ds.offloads or not ds.pin_memory:
        return None
    host = ctx.estimate.host
    offloaded = host.get("host/offload_optimizer", 0) + host.get("host/offload_params", 0)
    worst = host.get("host/process_base", 0) + offloaded * 4 // 3  # 1.5x buffer factor -> 2x rounding worst case
    if worst <= ctx.host_ram_bytes:
        return None
    assumed = " (assumed; pass --host-ram)" if ctx.host_ram_assumed else ""
    changes = []
    if ds.offload_optimizer != "none" and ds.offload_optimizer_pin_memory:
        changes.append(Change("ds_config", "zero_optimization.offload_optimizer.pin_memory", False))
    if ds.offload_param != "none" and ds.offload_param_pin_memory:
        changes.append(Change("ds_config", "zero_optimization.offload_param.pin_memory", False))
    return r.finding(f"Offloaded states need {gib(offloaded)} per node, up to {gib(worst)} with pinned-block rounding, "
                     f"against {gib(ctx.host_ram_bytes)} of host RAM{assumed}.",
                     Fix("use pageable host memory (slower transfers, no rounding)", tuple(changes)))


@rule("DS018", Severity.INFO, "ZeRO++ hpZ / MiCS change what each GPU holds",
      "zero_hpz_partition_size=g keeps a secondary 16-bit weight shard of 2 B x params / g on every GPU; MiCS "
      "shards states over mics_shard_size GPUs instead of all of them.", ev.DS_ZEROPP, ev.DS_ZERO_CONFIG)
def hpz_mics(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None or ds.zero_stage != 3 or (ds.zero_hpz_partition_size <= 1 and ds.mics_shard_size <= 0):
        return None
    parts = []
    if ds.zero_hpz_partition_size > 1:
        extra = 2 * ctx.scenario.model.num_params // ds.zero_hpz_partition_size
        parts.append(f"hpZ (zero_hpz_partition_size={ds.zero_hpz_partition_size}) adds about {gib(extra)} per GPU, "
                     "which the estimate does not include")
    if ds.mics_shard_size > 0:
        parts.append(f"MiCS shards states over {ds.mics_shard_size} GPUs, not {ctx.world}: per-GPU states are larger "
                     "than the estimate")
    return r.finding("; ".join(parts) + ".")

