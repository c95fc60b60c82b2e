"""Scenario -> ``ds_config.json`` as DeepSpeed and HF Trainer accept it.

Owns the DeepSpeed config of a DeepSpeed scenario (plan). Choices, with their sources:

- Batch keys are explicit and consistent (``train_batch_size`` = micro x accumulation x data-parallel
  ranks; DeepSpeed asserts it in ``runtime/config.py`` ``_batch_assertion``, HF Trainer checks them
  against its flags in ``integrations/deepspeed.py`` ``trainer_config_process``), so the file says
  what will run. The launch script passes the same numbers.
- Hidden-size "auto" values are resolved the way HF does (``reduce_bucket_size`` = h^2,
  ``stage3_prefetch_bucket_size`` = int(0.9 h^2), ``stage3_param_persistence_threshold`` = 10 h;
  engine-internals.md §1.2), written as ints (DeepSpeed >= 0.15's pydantic rejects fractions).
- ``bf16``/``fp16`` blocks both present with ``enabled`` explicit (HF checks both against --bf16/--fp16).
- Optimizer offload needs DeepSpeed's own optimizer (``zero_force_ds_cpu_optimizer`` defaults to True,
  a client optimizer raises ``ZeRORuntimeException``; engine-internals.md §9), so an ``optimizer``
  block (AdamW -> DeepSpeedCPUAdam) is written with HF-filled ("auto") hyper-parameters.
- A bitsandbytes / Adafactor client optimizer needs ``zero_allow_untested_optimizer``.
- NVMe offload: ``nvme_path`` placeholder, ``aio`` defaults, ``offload_param.buffer_size`` above the
  largest parameter partition (DeepSpeed's swapper asserts it, partitioned_param_swapper.py) and a
  smaller ``sub_group_size`` (the optimizer swapper pins 4 x sub_group x 4 B per rank).
"""

from __future__ import annotations

from typing import Any

from ..core.errors import VramplanError
from ..core.scenario import Engine, Offload, Optimizer, Precision, Scenario

NVME_PATH_PLACEHOLDER = "/local_nvme"
NVME_SUB_GROUP_SIZE = 100_000_000
NVME_PARAM_BUFFER_SIZE = 100_000_000
GRADIENT_CLIPPING = 1.0
"""HF TrainingArguments.max_grad_norm default; the launch script passes the same value."""


def resolved_buckets(scn: Scenario) -> dict[str, int]:
    """The hidden-size-based bucket sizes with HF "auto" resolved (module docstring)."""
    ds = scn.parallel.deepspeed
    h = scn.model.decoder.hidden_size
    return {
        "reduce_bucket_size": ds.reduce_bucket_size if ds.reduce_bucket_size is not None else h * h,
        "stage3_prefetch_bucket_size": (
            ds.stage3_prefetch_bucket_size if ds.stage3_prefetch_bucket_size is not None else int(0.9 * h * h)
        ),
        "stage3_param_persistence_threshold": (
            ds.stage3_param_persistence_threshold if ds.stage3_param_persistence_threshold is not None else 10 * h
        ),
    }


def _largest_param_numel(scn: Scenario) -> int:
    """Largest single parameter tensor: embeddings / lm_head, or a fused expert tensor (transformers 5.x)."""
    dec = scn.model.decoder
    largest = dec.vocab_size * dec.hidden_size
    if dec.moe is not None:
        largest = max(largest, dec.moe.num_experts * 2 * dec.moe.expert_intermediate * dec.hidden_size)
    return largest


def emit_deepspeed_config(scn: Scenario) -> dict[str, Any]:
    """The ds_config.json dict for a DeepSpeed scenario (module docstring)."""
    par, t = scn.parallel, scn.train
    if par.engine is not Engine.DEEPSPEED:
        raise VramplanError(f"parallel.engine={par.engine.value}: ds_config.json is only written for deepspeed plans")
    ds = par.deepspeed
    stage = par.zero
    buckets = resolved_buckets(scn)
    overlap = ds.overlap_comm if ds.overlap_comm is not None else stage == 3
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": overlap,
        "contiguous_gradients": ds.contiguous_gradients,
        "reduce_bucket_size": buckets["reduce_bucket_size"],
        "sub_group_size": ds.sub_group_size,
    }
    if stage in (1, 2):
        zero["allgather_bucket_size"] = ds.allgather_bucket_size
        zero["reduce_scatter"] = True
    if stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": buckets["stage3_prefetch_bucket_size"],
            "stage3_param_persistence_threshold": buckets["stage3_param_persistence_threshold"],
            "stage3_max_live_parameters": ds.stage3_max_live_parameters,
            "stage3_max_reuse_distance": ds.stage3_max_reuse_distance,
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    nvme = False
    if par.offload_optimizer is not Offload.NONE and stage >= 1:
        block: dict[str, Any] = {"device": par.offload_optimizer.value, "pin_memory": ds.pin_memory}
        if par.offload_optimizer is Offload.NVME:
            block.update({"nvme_path": NVME_PATH_PLACEHOLDER, "buffer_count": 4, "fast_init": False})
            zero["sub_group_size"] = min(ds.sub_group_size, NVME_SUB_GROUP_SIZE)
            nvme = True
        zero["offload_optimizer"] = block
    if par.offload_param is not Offload.NONE and stage == 3:
        block = {"device": par.offload_param.value, "pin_memory": ds.pin_memory}
        if par.offload_param is Offload.NVME:
            partition = -(-_largest_param_numel(scn) // max(1, scn.dp_degree)) + 1
            block.update({"nvme_path": NVME_PATH_PLACEHOLDER, "buffer_count": 5,
                          "buffer_size": max(NVME_PARAM_BUFFER_SIZE, partition), "max_in_cpu": 1_000_000_000})
            nvme = True
        zero["offload_param"] = block
    micro, accum, dp = t.micro_batch, t.grad_accum, scn.dp_degree
    bf16 = t.precision in (Precision.BF16_MIXED, Precision.BF16_PURE)
    fp16 = t.precision is Precision.FP16_MIXED
    cfg: dict[str, Any] = {
        "train_batch_size": micro * accum * dp,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "gradient_clipping": GRADIENT_CLIPPING,
        "bf16": {"enabled": bf16},
        "fp16": (
            {"enabled": True, "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
             "hysteresis": 2, "min_loss_scale": 1}
            if fp16 else {"enabled": False}
        ),
        "zero_optimization": zero,
        "wall_clock_breakdown": False,
    }
    if scn.parallel.deepspeed.grad_accum_dtype is not None:  # the optimizer ZeRO-0 bf16 builds (states.py)
        cfg["data_types"] = {"grad_accum_dtype": scn.parallel.deepspeed.grad_accum_dtype}
    if "offload_optimizer" in zero:
        cfg["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    elif t.optimizer not in (Optimizer.ADAMW, Optimizer.ADAMW_FUSED):
        cfg["zero_allow_untested_optimizer"] = True
    if nvme:
        cfg["aio"] = {"block_size": 1_048_576, "queue_depth": 8, "thread_count": 1, "single_submit": False,
                      "overlap_events": True}
    return cfg
