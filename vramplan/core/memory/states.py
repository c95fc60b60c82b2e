"""Model states per rank: parameters, gradients, fp32 master weights and optimizer states, and what moves to host RAM.

Sources (engine-internals.md §1-§4, §7):
- ZeRO paper (Rajbhandari et al. 2020, §5): mixed-precision Adam keeps 2Ψ (16-bit params) + 2Ψ (16-bit
  grads) + 12Ψ (fp32 master, m, v) = 16Ψ; stage 1 partitions the 12Ψ, stage 2 also the grads,
  stage 3 also the params.
- DeepSpeed stage_1_and_2.py: ZeRO-1 keeps full 16-bit grads; ZeRO-2 keeps a Ψ/N grad partition; without
  gradient accumulation both are gone between steps (measured with real DeepSpeed 0.19.8 ranks on the CPU,
  ``vramplan/tracing/deepspeed_cpu.py``);
  the most loaded ZeRO-2 rank's gradient partition holds its boundary parameters whole (``zero_partition.py``);
  bf16 at stage 0 (engine.py ``_do_optimizer_sanity_check``): with ``grad_accum_dtype`` = the model dtype
  (DeepSpeed's default since PR #7515) ``DDP_BFLOAT16`` = FP16_Optimizer/FP16_UnfusedOptimizer over bf16:
  bf16 grads 2Ψ (freed by the step), unpartitioned fp32 master 4Ψ and states 8Ψ (measured);
  with ``grad_accum_dtype: fp32`` BF16_Optimizer (fp32 grad buffer 4Ψ, master and states partitioned);
  optimizer offload keeps only 16-bit params (+ a largest-param grad staging buffer) on the GPU.
- DeepSpeed stage3.py: 16-bit param, grad and fp32 states partitions 2Ψ/N + 2Ψ/N + 12Ψ/N, small
  params (numel <= persistence threshold) replicated; offload_param keeps only those on the GPU.
- PyTorch DDP/single GPU under HF Trainer autocast: fp32 params and grads (4 + 4 B) and fp32 Adam
  states (8 B); pure bf16: 2 + 2 + 4 B. Accelerate upcasts trainable FSDP params to fp32 when
  mixed precision is on (accelerator.py); FSDP has no separate master copy.
- Optimizer state bytes: AdamW 2 fp32 moments; bitsandbytes 8-bit: 2 uint8 + fp32 absmax per
  256-element block; Adafactor: factored fp32 row/column moments (~0 per matrix element); HF "sgd"
  is torch SGD without momentum (no state).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import ModelSpec
from ..scenario import (
    Engine,
    FsdpSharding,
    Method,
    Offload,
    Optimizer,
    Precision,
    Scenario,
)
from ..units import ceil_div, shard
from .params import RankParams, quantized_bytes
from .zero_partition import zero12_grad_partition

DEEPSPEED_HOST_BUFFER_FACTOR_NUM = 3
DEEPSPEED_HOST_BUFFER_FACTOR_DEN = 2
"""DeepSpeed's ``additional_buffer_factor`` = 1.5 on host-side estimates (stage_1_and_2.py / stage3.py
``estimate_zero*_model_states_mem_needs``): pinned buffers and power-of-two pinned rounding (pytorch #95823)."""


@dataclass(frozen=True, slots=True)
class StateBytes:
    """Model-state bytes on one GPU and the host bytes they imply for one rank."""

    params: int
    grads_persistent: int
    """Gradient memory that exists before backward starts (ZeRO partitions, ZeRO-1 full grads, accumulation)."""
    grads_full: int
    """Gradient memory at the end of backward / during the optimizer step."""
    master: int
    optimizer: int
    host_optimizer: int
    """Per rank, on host: fp32 master + optimizer states + fp32 grads when the optimizer is offloaded."""
    host_params: int
    """Per rank, on host: 16-bit param partitions when params are offloaded."""
    offloads_optimizer: bool
    offloads_params: bool
    sharded_params: bool
    """Params are partitioned across data-parallel ranks (ZeRO-3, FSDP full/hybrid shard)."""
    dp_shard: int
    """Ranks the states are sharded over."""
    grads_freed_after_step: bool = False
    """The persistent gradient buffer is freed by the optimizer step and allocated again at the first gradient
    reduction of the next backward (DeepSpeed ZeRO-2 without accumulation: ``_release_ipg_buffers`` sets
    ``grads_in_partition = None``; ``copy_grads_in_partition`` allocates it; measured on real DeepSpeed ranks,
    docs/accuracy.md "Real DeepSpeed on the CPU")."""

    @property
    def grads_before_backward(self) -> int:
        """Gradient bytes in the forward and at the start of backward (before the first gradient exists)."""
        return 0 if self.grads_freed_after_step else self.grads_persistent


def stage0_bf16_optimizer(scn: Scenario) -> bool:
    """ZeRO-0 with 16-bit weights runs BF16_Optimizer: bf16 with ``data_types.grad_accum_dtype: fp32``
    (engine.py ``get_data_types`` / ``_do_optimizer_sanity_check``; DeepSpeed before PR #7515 did this by
    default). Otherwise bf16 runs ``DDP_BFLOAT16`` and fp16 ``FP16``."""
    return (scn.train.precision in (Precision.BF16_MIXED, Precision.BF16_PURE)
            and scn.parallel.deepspeed.grad_accum_dtype == "fp32")


def weight_bytes(scn: Scenario) -> int:
    """Bytes per element of trainable weights on the GPU."""
    p = scn.train.precision
    if p is Precision.FP32:
        return 4
    if scn.parallel.engine is Engine.DEEPSPEED or p is Precision.BF16_PURE:
        return 2
    return 4  # autocast mixed precision keeps fp32 weights (HF Trainer without DeepSpeed; accelerate FSDP upcast)


def frozen_bytes(scn: Scenario) -> int:
    """Bytes per element of frozen 16/32-bit weights (loaded in the compute dtype)."""
    return 4 if scn.train.precision is Precision.FP32 else 2


def optimizer_state_bytes(numel: int, scn: Scenario, state_dtype_bytes: int, model: ModelSpec) -> int:
    """Optimizer state bytes for ``numel`` trainable parameters (see module docstring)."""
    opt = scn.train.optimizer
    if opt in (Optimizer.ADAMW, Optimizer.ADAMW_FUSED):
        return 2 * state_dtype_bytes * numel
    if opt in (Optimizer.ADAMW_8BIT, Optimizer.PAGED_ADAMW_8BIT):
        return 2 * numel + 2 * 4 * ceil_div(numel, 256)
    if opt is Optimizer.ADAFACTOR:
        # Factored second moment: 4 * (rows + cols) per matrix; approximated by the decoder's
        # mean matrix aspect: numel / sqrt-ish is not needed, the row+col sum per element of a
        # d_in x d_out matrix is (d_in + d_out) / (d_in * d_out).
        h = model.decoder.hidden_size
        i = model.decoder.intermediate_size
        per_element_num = 4 * (h + i)
        return ceil_div(numel * per_element_num, h * i)
    return 0  # torch SGD without momentum


def model_state_bytes(scn: Scenario, rp: RankParams) -> StateBytes:
    """Bytes of params / grads / master / optimizer on the most loaded rank (see module docstring)."""
    par = scn.parallel
    engine = par.engine
    n = scn.dp_degree
    ep = par.ep
    t_dense = rp.trainable - rp.trainable_expert
    t_exp = rp.trainable_expert
    w = weight_bytes(scn)
    f = frozen_bytes(scn)
    frozen_b = rp.frozen * f + quantized_bytes(rp.frozen_quantized)
    if scn.train.method is Method.QLORA:
        # prepare_model_for_kbit_training casts every non-4-bit 16-bit param to fp32 (peft utils/other.py).
        frozen_b = rp.frozen * 4 + quantized_bytes(rp.frozen_quantized)

    def sharded(numel_dense: int, numel_exp: int, degree: int) -> int:
        """Elements per rank when dense params shard over ``degree`` and experts over ``degree / ep``."""
        return shard(numel_dense, degree) + shard(numel_exp, max(1, degree // ep))

    trainable = rp.trainable
    offload_opt = par.offload_optimizer is not Offload.NONE
    offload_par = par.offload_param is not Offload.NONE

    if engine is Engine.DEEPSPEED:
        stage = par.zero
        master_dtype = 4
        state_dtype = 4
        t_shard = sharded(t_dense, t_exp, n)
        f_shard = shard(rp.frozen, n)
        if stage == 0:
            params = trainable * w + frozen_b
            if scn.train.precision is Precision.FP16_MIXED:
                grads = trainable * 2
                master = trainable * master_dtype
                opt = optimizer_state_bytes(trainable, scn, state_dtype, scn.model)
            elif not stage0_bf16_optimizer(scn) and scn.train.precision is not Precision.FP32:
                # DDP_BFLOAT16: FP16_(Unfused)Optimizer over bf16 (measured: 2Ψ bf16 .grads freed by the step,
                # unpartitioned fp32 master and Adam); the .grads persist only while accumulating
                grads = trainable * 2
                master = trainable * master_dtype
                opt = optimizer_state_bytes(trainable, scn, state_dtype, scn.model)
                persistent = grads if scn.train.grad_accum > 1 else 0
                return StateBytes(params, persistent, grads, master, opt, 0, 0, False, False, False, 1)
            else:  # BF16_Optimizer: fp32 grad buffer, partitioned master and states
                grads = trainable * 4
                master = t_shard * master_dtype
                opt = optimizer_state_bytes(t_shard, scn, state_dtype, scn.model)
            if scn.train.precision is Precision.FP32:
                master = 0
            return StateBytes(params, grads, grads, master, opt, 0, 0, False, False, False, 1)
        if stage in (1, 2):
            params = trainable * w + frozen_b
            # ZeRO-2: grads_in_partition of the most loaded rank, boundary parameters whole (zero_partition.py)
            grads_full = trainable * w if stage == 1 else zero12_grad_partition(scn, trainable, n) * w
            master = 0 if scn.train.precision is Precision.FP32 else t_shard * master_dtype
            opt = optimizer_state_bytes(t_shard, scn, state_dtype, scn.model)
            if offload_opt:
                host = master + opt + t_shard * 4
                staging = rp.largest_trainable_param * w  # temp_grad_buffer_for_gpu_offload
                # ZeRO-1 does not partition gradients (partition_gradients=False): the 16-bit grads of
                # parameters this rank does not own stay on the GPU, offload or not.
                gpu_grads = trainable * w if stage == 1 else staging
                return StateBytes(params, gpu_grads, gpu_grads, 0, 0, host, 0, True, False, False, n)
            if scn.train.grad_accum == 1:
                # Without accumulation nothing survives the step (measured on real DeepSpeed ranks): ZeRO-1's
                # full grads are per-parameter .grad tensors that grow through backward as DDP's do; ZeRO-2's
                # partition buffer is freed by the step and re-allocated at the first reduction.
                if stage == 1:
                    return StateBytes(params, 0, grads_full, master, opt, 0, 0, False, False, False, n)
                return StateBytes(params, grads_full, grads_full, master, opt, 0, 0, False, False, False, n,
                                  grads_freed_after_step=True)
            return StateBytes(params, grads_full, grads_full, master, opt, 0, 0, False, False, False, n)
        # stage 3
        persistent = rp.persistent
        params = t_shard * w + (f_shard * f if scn.train.method is not Method.QLORA else 0)
        if scn.train.method is Method.QLORA:
            params += shard(rp.frozen, n) * 4 + quantized_bytes(shard(rp.frozen_quantized, n))
        params += persistent * w
        grads = t_shard * w
        master = 0 if scn.train.precision is Precision.FP32 else t_shard * master_dtype
        opt = optimizer_state_bytes(t_shard, scn, state_dtype, scn.model)
        host_opt = host_par = 0
        if offload_opt:
            # stage3.py with offload: 16-bit grad partitions, fp32 master and states on the host; the
            # fp32 grad exists per sub-group during the step (flatten 2 B + fp32 copy 4 B).
            sub_group = min(par.deepspeed.sub_group_size, t_shard)
            host_opt = master + opt + grads + 6 * sub_group
            master = opt = 0
            grads = 0
        if offload_par:
            host_par = params - persistent * w
            params = persistent * w
        return StateBytes(params, grads, grads, master, opt, host_opt, host_par, offload_opt, offload_par, True, n)

    if engine in (Engine.FSDP, Engine.FSDP2) and par.fsdp_sharding is not FsdpSharding.NO_SHARD:
        degree = n
        if par.fsdp_sharding is FsdpSharding.HYBRID_SHARD:
            degree = min(n, scn.cluster.gpus_per_node)
        t_shard = sharded(t_dense, t_exp, degree)
        params = t_shard * w + shard(rp.frozen, degree) * f + quantized_bytes(shard(rp.frozen_quantized, degree))
        grads = t_shard * w
        opt = optimizer_state_bytes(t_shard, scn, w, scn.model)
        if offload_par or offload_opt:
            # CPUOffload(offload_params=True): sharded params, grads and the optimizer step live on the host.
            return StateBytes(0, 0, 0, 0, 0, grads + opt, params, True, True, True, degree)
        accumulating = grads if scn.train.grad_accum > 1 else 0
        return StateBytes(params, accumulating, grads, 0, opt, 0, 0, False, False, True, degree)

    # single GPU, DDP, FSDP NO_SHARD: everything replicated.
    params = trainable * w + frozen_b
    grads = trainable * w
    opt = optimizer_state_bytes(trainable, scn, w, scn.model)
    accumulating = grads if scn.train.grad_accum > 1 else 0
    return StateBytes(params, accumulating, grads, 0, opt, 0, 0, False, False, False, 1)


def host_buffer_factor(value: int) -> int:
    """Apply DeepSpeed's 1.5 host buffer factor."""
    return ceil_div(value * DEEPSPEED_HOST_BUFFER_FACTOR_NUM, DEEPSPEED_HOST_BUFFER_FACTOR_DEN)
