"""Engine buffers and temporaries: ZeRO buckets and gathers, FSDP unsharded units, DDP buckets, optimizer-step copies.

Sources (engine-internals.md):
- §1.3 ZeRO-1/2 (stage_1_and_2.py): IPG reduce bucket ``reduce_bucket_size`` x 2 B, doubled by
  overlap_comm; each param's full 16-bit ``.grad`` lives until copied into the bucket (largest
  param x 2 B); the step flattens a group's 16-bit grads (2 B) and casts them to fp32 (4 B).
- §2 ZeRO-3 (stage3.py, partitioned_param_coordinator.py): the largest unit a hook gathers
  (a module's direct params; a whole MoE block with leaf modules or fused experts) plus the
  prefetch window (<= stage3_prefetch_bucket_size); in backward the unit's full 16-bit grads
  before reduce-scatter (DeepSpeed's own estimator: 4 x largest layer); one IPG bucket;
  step copies per sub-group (min(sub_group_size, partition)).
- §4 FSDP1 FULL_SHARD keeps the root unit unsharded fwd->bwd and holds current + prefetched unit;
  SHARD_GRAD_OP keeps every unit unsharded; FSDP2 copy-out doubles the gathered group transiently.
  DDP (gradient_as_bucket_view=False default) keeps a second copy of the gradients in buckets.
- torch AdamW foreach allocates one state-sized temporary (``_foreach_sqrt`` of exp_avg_sq).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..scenario import Engine, FsdpSharding, Method, Optimizer, Precision, Scenario
from ..units import shard
from .params import RankParams
from .states import StateBytes, stage0_bf16_optimizer, weight_bytes


@dataclass(frozen=True, slots=True)
class EngineBuffers:
    """Buffer and temporary bytes per phase on one rank."""

    zero_buckets: int
    gathered_forward: int
    gathered_backward: int
    ddp_buckets: int
    grad_transient: int
    """Backward: a full-size gradient waiting to be bucketed (ZeRO-1/2)."""
    optimizer_step: int
    dequant: int
    gathered_backward_start: int = -1
    """Gathered at the start of backward (loss backward), before any layer runs; -1: ``gathered_backward``."""
    gathered_forward_layer: int = -1
    """Gathered while a layer runs forward (FSDP2 prefetches the next one); -1: ``gathered_forward``."""
    gathered_backward_top: int = -1
    """Gathered while the first (top) layer runs backward; -1: ``gathered_backward``."""
    gathered_backward_bottom: int = -1
    """Gathered while the last (bottom) layer runs backward; -1: ``gathered_backward``."""
    zero_buckets_between_steps: int = 0
    """IPG bucket bytes that exist in the forward: ZeRO-3 allocates its bucket in ``DeepSpeedZeroOptimizer_Stage3.
    __init__`` and keeps it; ZeRO-1/2 allocate theirs at the first reduction and free them with the step unless
    gradients accumulate (both measured on real DeepSpeed ranks, docs/accuracy.md)."""

    @property
    def gathered_at_backward_start(self) -> int:
        """``gathered_backward_start``, defaulting to ``gathered_backward``."""
        return self.gathered_backward if self.gathered_backward_start < 0 else self.gathered_backward_start

    @property
    def gathered_at_forward_layer(self) -> int:
        """``gathered_forward_layer``, defaulting to ``gathered_forward``."""
        return self.gathered_forward if self.gathered_forward_layer < 0 else self.gathered_forward_layer

    @property
    def gathered_at_backward_top(self) -> int:
        """``gathered_backward_top``, defaulting to ``gathered_backward``."""
        return self.gathered_backward if self.gathered_backward_top < 0 else self.gathered_backward_top

    @property
    def gathered_at_backward_bottom(self) -> int:
        """``gathered_backward_bottom``, defaulting to ``gathered_backward``."""
        return self.gathered_backward if self.gathered_backward_bottom < 0 else self.gathered_backward_bottom


def reduce_bucket_elements(scn: Scenario) -> int:
    """``reduce_bucket_size`` in elements; HF "auto" = hidden_size^2 (transformers integrations/deepspeed.py)."""
    knob = scn.parallel.deepspeed.reduce_bucket_size
    return scn.model.decoder.hidden_size ** 2 if knob is None else knob


def prefetch_elements(scn: Scenario) -> int:
    """ZeRO-3 prefetch window in elements; "auto" = 0.9 * hidden^2, capped by max_live_parameters."""
    ds = scn.parallel.deepspeed
    knob = ds.stage3_prefetch_bucket_size
    window = int(0.9 * scn.model.decoder.hidden_size ** 2) if knob is None else knob
    return min(window, ds.stage3_max_live_parameters)


def _foreach_temp(numel: int, state_bytes: int, scn: Scenario) -> int:
    """Optimizer temporaries during ``step()`` for ``numel`` parameters in one group: torch AdamW's
    foreach path allocates ``_foreach_sqrt(exp_avg_sq)`` (one state-sized tensor); fused and 8-bit
    kernels update in place."""
    return numel * state_bytes if scn.train.optimizer is Optimizer.ADAMW else 0


def engine_buffers(scn: Scenario, rp: RankParams, states: StateBytes) -> EngineBuffers:
    """Buffers and temporaries of the scenario's engine on the most loaded rank."""
    par = scn.parallel
    ds = par.deepspeed
    w = weight_bytes(scn)
    engine = par.engine
    zero_buckets = gathered_f = gathered_b = ddp = grad_transient = step = 0
    gathered_b_start = gathered_b_top = gathered_b_bottom = gathered_f_layer = -1
    dequant = 0
    if scn.train.method is Method.QLORA:
        dequant = rp.largest_base_linear * 2  # Linear4bit dequantizes the weight to bf16 per use
    if scn.train.optimizer is Optimizer.ADAFACTOR:
        step += rp.largest_trainable_param * 8  # fp32 copies of one param and its grad

    if engine is Engine.DEEPSPEED and par.zero >= 1:
        bucket = reduce_bucket_elements(scn) * w
        overlap = ds.overlap_comm if ds.overlap_comm is not None else par.zero == 3
        t_shard = shard(rp.trainable, scn.dp_degree)
        if par.zero in (1, 2):
            if ds.contiguous_gradients or states.offloads_optimizer:
                zero_buckets = bucket * (2 if overlap else 1)
            if par.zero == 2 or scn.train.grad_accum > 1 or states.offloads_optimizer:
                # a fresh gradient next to the buffer it is copied into; ZeRO-1 without accumulation keeps
                # autograd's .grad itself (no copy, measured: docs/accuracy.md "Real DeepSpeed on the CPU")
                grad_transient = rp.largest_trainable_param * w
            if not states.offloads_optimizer:
                # flatten (2 B) -> fp32 copy (4 B) becomes the master's grad, plus foreach temps.
                step += t_shard * 4 + _foreach_temp(t_shard, 4, scn)
        else:
            zero_buckets = bucket
            unit = rp.largest_unit * w
            window = min(prefetch_elements(scn), ds.stage3_max_live_parameters) * w
            gathered_f = unit + window
            gathered_b = 2 * unit + window  # gathered params + their full grads before reduce-scatter
            gathered_b_start = unit + window  # the loss backward: no parameter gradient exists yet
            if not states.offloads_optimizer:
                group = min(ds.sub_group_size, t_shard)
                step += group * (2 + 4) + _foreach_temp(group, 4, scn)
    elif engine is Engine.DEEPSPEED:  # stage 0
        if scn.train.precision in (Precision.BF16_MIXED, Precision.BF16_PURE) and not stage0_bf16_optimizer(scn):
            # DDP_BFLOAT16: FP16_UnfusedOptimizer.step casts every bf16 grad to an fp32 .grad of its master
            # (fp16/unfused_optimizer.py ``fp32_param.grad = fp16_param.grad.to(fp32)``; FP16_Optimizer flattens
            # them to one fp32 buffer), then steps the unpartitioned master
            step += rp.trainable * 4 + _foreach_temp(rp.trainable, 4, scn)
        else:
            step += _foreach_temp(shard(rp.trainable, scn.dp_degree), 4, scn)
    elif engine in (Engine.FSDP, Engine.FSDP2) and par.fsdp_sharding is not FsdpSharding.NO_SHARD:
        unsharded = 2 if scn.train.precision is not Precision.FP32 else 4  # param_dtype of the gathered copy
        layer = rp.largest_layer * unsharded
        root = rp.root_unit * unsharded
        if par.fsdp_sharding is FsdpSharding.SHARD_GRAD_OP:
            everything = (rp.trainable + rp.frozen) * unsharded
            gathered_f = everything
            gathered_b = everything + layer  # + the unit's unsharded grads
        elif engine is Engine.FSDP2:
            # traced (torch 2.13 fully_shard, accelerate layout): at the loss the root's unsharded params
            # and one layer's all-gather buffer are live. A layer's backward holds its unsharded params,
            # its 16-bit unsharded grads, the prefetched next layer (not for the bottom one) and the
            # previous layer's reduce-scatter input (reduce dtype), kept until the next reduce-scatter
            # (not yet for the top one).
            reduce = rp.largest_layer * (4 if scn.train.precision is not Precision.BF16_PURE else 2)
            gathered_f = root + layer
            # the running layer, and the next one prefetched: its all-gather output and its copy-out
            gathered_f_layer = root + 3 * layer
            gathered_b = root + 2 * layer + layer + reduce
            gathered_b_start = root + layer
            gathered_b_top = root + 2 * layer + layer
            gathered_b_bottom = root + layer + layer + reduce
        else:
            gathered_f = root + 2 * layer
            reduce = rp.largest_layer * (4 if scn.train.precision is not Precision.BF16_PURE else 2)
            gathered_b = root + 2 * layer + layer + reduce
        if not (states.offloads_optimizer or states.offloads_params):
            step += _foreach_temp(shard(rp.trainable, states.dp_shard), w, scn)
    else:
        if engine is Engine.DDP or (engine in (Engine.FSDP, Engine.FSDP2)):
            ddp = rp.trainable * w if scn.cluster.world_size > 1 else 0
        step += _foreach_temp(rp.trainable, w, scn)
    return EngineBuffers(
        zero_buckets=zero_buckets,
        zero_buckets_between_steps=zero_buckets if (par.zero == 3 or scn.train.grad_accum > 1) else 0,
        gathered_forward=gathered_f,
        gathered_backward=gathered_b,
        ddp_buckets=ddp,
        grad_transient=grad_transient,
        optimizer_step=step,
        dequant=dequant,
        gathered_backward_start=gathered_b_start,
        gathered_forward_layer=gathered_f_layer,
        gathered_backward_top=gathered_b_top,
        gathered_backward_bottom=gathered_b_bottom,
    )
