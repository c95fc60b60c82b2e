"""Doctor rules on the DeepSpeed JSON itself (engine-internals.md §1, §9 "Doctor rules for DeepSpeed configs").

DS001-DS010: offload below stage 3, client optimizers with offload, ZeRO-1/2 replication, bucket sizes,
fractional integers, TrainingArguments mismatches, precision flags. Pure.
"""

from __future__ import annotations

from ..adapters._json_tools import is_auto
from ..core.scenario import Precision
from . import evidence as ev
from ._registry import gib, rule
from .types import Change, DoctorContext, Finding, Fix, Rule, Severity

ZERO3_KEYS = (
    Change("ds_config", "zero_optimization.stage", 3),
    Change("ds_config", "zero_optimization.stage3_prefetch_bucket_size", "auto"),
    Change("ds_config", "zero_optimization.stage3_param_persistence_threshold", "auto"),
    Change("ds_config", "zero_optimization.stage3_gather_16bit_weights_on_model_save", True),
)
DS_ADAMW_BLOCK = {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}}
SMALL_GPU_BYTES = 25 * 1024**3
"""'24 GB-class' cards (RTX 3090/4090, A10, L4 report 22-23.7 GiB)."""
BIG_BUCKET = 200_000_000
PLAIN_ADAM = ("adamw_torch", "adamw_hf", "adamw", "adam", "adamw_torch_fused", "adamw_apex_fused")
"""HF --optim values that DeepSpeedCPUAdam stands in for without changing the algorithm."""


@rule("DS001", Severity.WARNING, "offload_param has no effect below ZeRO stage 3",
      "Parameter offload is a ZeRO-3 feature ('Valid only with stage 3'); at stages 1-2 the 16-bit weights stay "
      "on every GPU whatever offload_param says.", ev.DS_OFFLOAD_CONFIG, ev.DS_CONFIG_DOCS)
def offload_param_below_3(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None or ds.offload_param == "none" or ds.zero_stage == 3:
        return None
    params = ctx.estimate.peak.breakdown["model_states/params"]
    return r.finding(
        f"{ds.source} sets offload_param.device={ds.offload_param} at stage {ds.zero_stage}: it is ignored, "
        f"and the {gib(params)} of 16-bit weights per GPU stay on the GPU. Only ZeRO-3 can move them to the host.",
        Fix("remove the ineffective offload_param block (or move to ZeRO-3, see the ranked fixes)",
            (Change("ds_config", "zero_optimization.offload_param", remove=True),)),
    )


@rule("DS002", Severity.ERROR, "NVMe optimizer offload or offload ratio below stage 3",
      "offload_optimizer.device=nvme and offload_optimizer.ratio < 1 are only valid with ZeRO stage 3 "
      "(DeepSpeed's config validator rejects them).", ev.DS_OFFLOAD_CONFIG, ev.DS_ZERO_CONFIG)
def nvme_or_ratio_below_3(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None or ds.zero_stage == 3:
        return None
    changes = []
    problems = []
    if ds.offload_optimizer == "nvme":
        problems.append("offload_optimizer.device=nvme")
        changes.append(Change("ds_config", "zero_optimization.offload_optimizer.device", "cpu"))
    if ds.offload_optimizer != "none" and ds.offload_optimizer_ratio < 1:
        problems.append(f"offload_optimizer.ratio={ds.offload_optimizer_ratio}")
        changes.append(Change("ds_config", "zero_optimization.offload_optimizer.ratio", remove=True))
    if not problems:
        return None
    return r.finding(f"{ds.source}: {' and '.join(problems)} at stage {ds.zero_stage}; DeepSpeed refuses this config.",
                     Fix("offload the optimizer to CPU memory instead (or use ZeRO-3)", tuple(changes)))


@rule("DS003", Severity.WARNING, "optimizer offload with a client (non-DeepSpeed) optimizer",
      "With offload_optimizer, DeepSpeed raises ZeRORuntimeException for a client optimizer unless "
      "zero_force_ds_cpu_optimizer is false (default true). HF Trainer builds torch AdamW when the JSON has no "
      "'optimizer' block; recent accelerate silently swaps it for DeepSpeedCPUAdam (keeping only lr and weight "
      "decay), older stacks raise.", ev.DS_ENGINE, ev.ACCELERATE_ACCELERATOR, ev.TF_DS_INTEGRATION)
def client_optimizer_with_offload(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None or ds.offload_optimizer == "none" or ds.has_optimizer_block or not ds.zero_force_ds_cpu_optimizer:
        return None
    optim = ctx.flag("optim") or "adamw_torch"
    other = optim.lower() not in PLAIN_ADAM
    text = (f"{ds.source} offloads the optimizer but defines no 'optimizer' block, so HF Trainer passes its own "
            f"--optim {optim}. ")
    text += ("accelerate replaces it with DeepSpeedCPUAdam: you will not train with " + optim + ", and the memory "
             "estimate for it does not apply." if other else
             "Depending on the accelerate/DeepSpeed versions it is swapped for DeepSpeedCPUAdam or the run stops "
             "with ZeRORuntimeException.")
    return r.finding(text, Fix("add a DeepSpeed optimizer block (CPU Adam with HF's values)",
                               (Change("ds_config", "optimizer", DS_ADAMW_BLOCK),)),
                     severity=Severity.ERROR if other else None)


@rule("DS004", Severity.WARNING, "ZeRO-1/2 keeps a full copy of every weight on each GPU",
      "ZeRO stages 1-2 partition gradients and optimizer states only; 16-bit weights, frozen ones and all MoE "
      "experts included, are replicated on every rank. ZeRO-3 shards them.", ev.DS_STAGE_1_AND_2, ev.ZERO_PAPER,
      ev.MGM_ISSUE_75)
def zero2_replication(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None or ds.zero_stage == 3 or ctx.world < 2:
        return None
    est = ctx.estimate
    params = est.peak.breakdown["model_states/params"]
    frozen = est.params.rank_frozen * 2
    moe = ctx.scenario.model.is_moe
    if not moe and frozen < est.usable_bytes // 10:
        return None
    what = "MoE experts of every layer" if moe else f"{est.params.rank_frozen / 1e9:.2f}B frozen parameters"
    return r.finding(
        f"ZeRO-{ds.zero_stage} holds all {gib(params)} of 16-bit weights on each of the {ctx.world} GPUs "
        f"({gib(est.usable_bytes)} usable), including the {what}. ZeRO-3 would keep about "
        f"{gib(params // ctx.world)} per GPU plus the layer being gathered.",
        Fix("switch to ZeRO-3", ZERO3_KEYS),
    )


@rule("DS005", Severity.WARNING, "large communication buckets on a small GPU",
      "ZeRO-1/2 allocate the reduce bucket (reduce_bucket_size elements x 2 B, doubled by overlap_comm) at every "
      "backward; the 5e8 default costs 1-2 GB (DeepSpeed #1302, #2992, #3338; HF docs put overlap_comm at "
      "~4.5x the bucket sizes). HF's 'auto' uses hidden_size^2.", ev.DS_STAGE_1_AND_2, ev.DS_ISSUE_1302,
      ev.DS_ISSUE_2992, ev.DS_ISSUE_3338, ev.TF_DS_DOCS)
def big_buckets(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None or ds.zero_stage == 0 or ds.reduce_bucket_size is None:
        return None
    reduce_bytes = ds.reduce_bucket_size * 2 * (2 if ds.overlap_comm and ds.zero_stage < 3 else 1)
    small = ctx.scenario.cluster.gpu.memory_bytes <= SMALL_GPU_BYTES
    big = ds.reduce_bucket_size >= BIG_BUCKET or (ds.allgather_bucket_size_set and ds.allgather_bucket_size >= BIG_BUCKET)
    if not ((small and big) or reduce_bytes > ctx.estimate.usable_bytes // 20):
        return None
    changes = [Change("ds_config", "zero_optimization.reduce_bucket_size", "auto")]
    if ds.allgather_bucket_size_set and ds.allgather_bucket_size > BIG_BUCKET:
        changes.append(Change("ds_config", "zero_optimization.allgather_bucket_size", BIG_BUCKET))
    upper = int(4.5 * (ds.reduce_bucket_size + (ds.allgather_bucket_size if ds.overlap_comm else 0)))
    return r.finding(
        f"reduce_bucket_size={ds.reduce_bucket_size:.3g} elements costs {gib(reduce_bytes)} per GPU in the code "
        f"(up to {gib(upper)} by HF's overlap_comm rule of thumb) on a {gib(ctx.scenario.cluster.gpu.memory_bytes)} card.",
        Fix("let HF size the bucket (hidden_size^2)", tuple(changes)),
    )


@rule("DS006", Severity.ERROR, "integer DeepSpeed key given as a fractional float",
      "DeepSpeed >= 0.15 validates its config with pydantic v2, which rejects a float with a fraction for an "
      "integer key (e.g. 0.9*h^2 written out as 15099494.4).", ev.DS_PR_5167, ev.TF_DS_INTEGRATION)
def fractional_ints(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None:
        return None
    if ds.fractional_int_keys:
        keys = ", ".join(f"{k}={v}" for k, v in ds.fractional_int_keys)
        return r.finding(f"{ds.source}: {keys} must be whole numbers.",
                         Fix("write whole numbers", tuple(Change("ds_config", k, int(v)) for k, v in ds.fractional_int_keys)))
    if ds.prefetch_auto_fractional and ds.stage3_prefetch_bucket_size is not None:
        value = ds.stage3_prefetch_bucket_size
        return r.finding(
            f"stage3_prefetch_bucket_size is 'auto': transformers versions that fill it as 0.9*hidden^2 without int() "
            f"write {0.9 * (ds.hidden_size or 0) ** 2} here, which DeepSpeed >= 0.15 rejects; newer transformers and "
            f"accelerate round it. Writing the integer avoids the question.",
            Fix("write the integer value", (Change("ds_config", "zero_optimization.stage3_prefetch_bucket_size", value),)),
            severity=Severity.INFO,
        )
    return None


@rule("DS007", Severity.ERROR, "DeepSpeed JSON disagrees with the training flags",
      "HF Trainer fills 'auto' from TrainingArguments and raises ValueError ('Please correct the following "
      "DeepSpeed config values that mismatch TrainingArguments') when a literal differs; DeepSpeed itself asserts "
      "train_batch_size == micro x GA x world size.", ev.TF_DS_INTEGRATION, ev.DS_RUNTIME_CONFIG)
def mismatches(ctx: DoctorContext, r: Rule) -> Finding | None:
    ds = ctx.ds
    if ds is None or not ds.mismatches:
        return None
    keys = []
    for m in ds.mismatches:
        key = m.split()[1].split("=")[0]
        if key not in keys:
            keys.append(key)
    if ds.source.startswith("accelerate"):  # no JSON to edit: the value comes from the accelerate config
        written = [k for k in keys if k in ds.raw and not is_auto(ds.raw[k])]
        by_hand = tuple(Change("code", f"accelerate:{k}", f"remove deepspeed_config.{k} from the accelerate config "
                               f"(or pass the same value as --{k} to the training script)") for k in written or keys)
        in_written_json = tuple(Change("ds_config", k, "auto") for k in keys)  # what --fix-dir's ds_config.json holds
        return r.finding("; ".join(ds.mismatches) + ".",
                         Fix("let HF fill them from the training flags", by_hand + in_written_json))
    return r.finding("; ".join(ds.mismatches) + ".",
                     Fix("set these keys to \"auto\" so HF fills them", tuple(Change("ds_config", k, "auto") for k in keys)))


@rule("DS008", Severity.ERROR, "fp16 and bf16 both enabled",
      "DeepSpeed asserts that bf16 and fp16 are not enabled together; TrainingArguments refuses --fp16 with --bf16.",
      ev.DS_RUNTIME_CONFIG, ev.TF_TRAINING_ARGS)
def fp16_and_bf16(ctx: DoctorContext, r: Rule) -> Finding | None:
    both = (ctx.ds is not None and ctx.ds.fp16_enabled and ctx.ds.bf16_enabled) or (
        ctx.launch is not None and ctx.launch.bf16 and ctx.launch.fp16)
    if not both:
        return None
    keep_bf16 = ctx.scenario.cluster.gpu.bf16
    changes = [Change("script", "fp16" if keep_bf16 else "bf16", "False")]
    if ctx.ds is not None:
        changes += [Change("ds_config", "fp16.enabled", "auto"), Change("ds_config", "bf16.enabled", "auto")]
    return r.finding("Both fp16 and bf16 are on.",
                     Fix(f"keep {'bf16' if keep_bf16 else 'fp16'} only", tuple(changes)))


@rule("DS009", Severity.ERROR, "bf16 on a GPU without bf16",
      "V100 (sm70) and T4 (sm75) have no bf16 tensor cores: TrainingArguments raises 'Your setup doesn't support "
      "bf16/gpu' and kernels fail or crawl. Use fp16 with loss scaling.", ev.TF_TRAINING_ARGS, ev.DS_CONFIG_DOCS)
def bf16_unsupported(ctx: DoctorContext, r: Rule) -> Finding | None:
    gpu = ctx.scenario.cluster.gpu
    if gpu.bf16 or ctx.scenario.train.precision not in (Precision.BF16_MIXED, Precision.BF16_PURE):
        return None
    changes = [Change("script", "bf16", "False"), Change("script", "fp16", "True")]
    if ctx.ds is not None and "bf16" in ctx.ds.raw:
        changes.append(Change("ds_config", "bf16.enabled", "auto"))
    return r.finding(f"The run trains in bf16 but {gpu.display_name} (compute capability {gpu.compute_capability}) "
                     "has no bf16 support.", Fix("train in fp16 with loss scaling", tuple(changes)))


@rule("DS010", Severity.INFO, "fp16 on a GPU that supports bf16",
      "fp16 needs dynamic loss scaling and overflows more easily; bf16 has fp32's range at the same memory cost.",
      ev.DS_CONFIG_DOCS, ev.TF_TRAINING_ARGS)
def fp16_on_bf16_gpu(ctx: DoctorContext, r: Rule) -> Finding | None:
    gpu = ctx.scenario.cluster.gpu
    if not gpu.bf16 or ctx.scenario.train.precision is not Precision.FP16_MIXED:
        return None
    return r.finding(f"{gpu.display_name} supports bf16; the run uses fp16 (loss scaling, overflow risk).",
                     Fix("train in bf16", (Change("script", "fp16", "False"), Change("script", "bf16", "True"))))
