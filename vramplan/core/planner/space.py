"""The search space: which setups exist for a starting scenario, and how to build each one.

A *family* fixes the engine, ZeRO stage or FSDP variant, offload targets, parallel degrees and
training method. Within a family the search varies, in this order of preference:

- a *variant* ladder of memory savers, each step one more change: the starting optimizer,
  precision and allocator settings first; then ``expandable_segments`` with HF "auto" ZeRO buckets;
  then 8-bit AdamW (bitsandbytes) and Adafactor where the engine runs a client optimizer; then pure
  bf16 where the engine would otherwise keep fp32 weights (DDP, FSDP);
- gradient checkpointing (full, none; selective only if the starting scenario uses it: HF Trainer
  has no selective recompute);
- the micro-batch, with gradient accumulation keeping the global batch.

Only combinations the engines support are generated (engine-internals.md §1-§4, §9):
DeepSpeed optimizer offload is searched at stages 2 and 3 (ZeRO-1 keeps full 16-bit gradients,
§1.3 item 6, which the estimator does not count under offload); offload_param and NVMe need stage 3; optimizer offload needs
DeepSpeedCPUAdam (no bitsandbytes optimizer); pipeline parallelism runs with ZeRO <= 1
(DeepSpeed's PipelineEngine); expert parallelism needs DeepSpeed-MoE layers at ZeRO <= 2; tensor
parallelism runs with FSDP2 (accelerate ``ParallelismConfig`` + a transformers ``tp_plan``);
LoRA/QLoRA run with DDP, ZeRO-2/3 and FSDP full-shard. HF Trainer + ZeRO/FSDP with tp = pp = 1
is the mainstream; the other families carry a note saying what they require.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import gcd

from ..scenario import (
    Attention,
    Engine,
    FsdpSharding,
    GradCkpt,
    Method,
    Offload,
    Optimizer,
    Precision,
    Scenario,
)

CLIENT_OPTIMIZER_SAVERS = (Optimizer.ADAMW_8BIT, Optimizer.ADAFACTOR)
"""Memory-saving optimizers tried when the starting one does not fit (bitsandbytes 8-bit AdamW, Adafactor)."""


@dataclass(frozen=True, slots=True)
class Family:
    """Engine, sharding, offload, parallel degrees and method of a group of candidates."""

    engine: Engine
    zero: int = 0
    offload_optimizer: Offload = Offload.NONE
    offload_param: Offload = Offload.NONE
    fsdp_sharding: FsdpSharding = FsdpSharding.FULL_SHARD
    tp: int = 1
    pp: int = 1
    ep: int = 1
    method: Method = Method.FULL

    @property
    def uses_nvme(self) -> bool:
        """Offloads anything to NVMe (tried only when the CPU counterpart runs out of host RAM)."""
        return Offload.NVME in (self.offload_optimizer, self.offload_param)

    def cpu_counterpart(self) -> Family:
        """The same family with every NVMe target replaced by CPU."""
        opt = Offload.CPU if self.offload_optimizer is Offload.NVME else self.offload_optimizer
        par = Offload.CPU if self.offload_param is Offload.NVME else self.offload_param
        return replace(self, offload_optimizer=opt, offload_param=par)

    @property
    def client_optimizer(self) -> bool:
        """The engine runs the optimizer the trainer builds (not DeepSpeedCPUAdam / a CPU step)."""
        return self.offload_optimizer is Offload.NONE and self.offload_param is Offload.NONE

    def requirements(self, scn: Scenario) -> tuple[str, ...]:
        """What this family needs beyond HF Trainer's mainstream path."""
        out: list[str] = []
        if self.pp > 1:
            out.append(f"pipeline parallelism (pp={self.pp}) needs the model wrapped in deepspeed.pipe.PipelineModule; "
                       "HF Trainer cannot drive DeepSpeed's PipelineEngine")
        if self.ep > 1:
            out.append(f"expert parallelism (ep={self.ep}) needs DeepSpeed-MoE layers (deepspeed.moe.layer.MoE, "
                       "ep_size) in the model code, ZeRO <= 2")
        if self.tp > 1:
            out.append(f"tensor parallelism (tp={self.tp}) needs accelerate's ParallelismConfig with FSDP2 and a "
                       "transformers model that has a tp_plan")
        if self.uses_nvme:
            out.append("NVMe offload needs a fast local SSD (nvme_path in ds_config.json) and DeepSpeed's async_io op")
        if self.method is Method.QLORA:
            out.append("QLoRA needs bitsandbytes (CUDA) and PEFT")
        elif self.method is Method.LORA:
            out.append("LoRA needs PEFT")
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Variant:
    """Optimizer, precision and allocator settings of one rung of the ladder."""

    optimizer: Optimizer
    precision: Precision
    expandable_segments: bool
    auto_buckets: bool


def allowed_methods(start: Scenario, methods: tuple[Method, ...]) -> tuple[Method, ...]:
    """The methods to search: ``full`` keeps the starting full/freeze method, LoRA/QLoRA are changes."""
    if not methods:
        return (start.train.method,)
    out: list[Method] = []
    for m in methods:
        if m in (Method.FULL, Method.FREEZE):
            m = start.train.method if start.train.method in (Method.FULL, Method.FREEZE) else m
        if m not in out:
            out.append(m)
    return tuple(out)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def enumerate_families(start: Scenario, methods: tuple[Method, ...], model_parallel: bool = True,
                       nvme: bool = True) -> list[Family]:
    """Every family the engines support for this model and cluster (module docstring)."""
    world = start.cluster.world_size
    dec = start.model.decoder
    out: list[Family] = []
    for method in methods:
        adapters = method in (Method.LORA, Method.QLORA)
        if world == 1:
            out.append(Family(Engine.SINGLE, method=method))
        else:
            out.append(Family(Engine.DDP, method=method))
        ds_stages = (2, 3) if adapters else (0, 1, 2, 3)
        for stage in ds_stages:
            out.append(Family(Engine.DEEPSPEED, zero=stage, method=method))
            if adapters:
                continue
            if stage == 2:  # ZeRO-1 + offload is left out: ZeRO-1 keeps full gradients, ZeRO-2 + offload is the fix
                out.append(Family(Engine.DEEPSPEED, zero=stage, offload_optimizer=Offload.CPU, method=method))
            if stage == 3:
                out.append(Family(Engine.DEEPSPEED, zero=3, offload_optimizer=Offload.CPU, method=method))
                out.append(Family(Engine.DEEPSPEED, zero=3, offload_optimizer=Offload.CPU, offload_param=Offload.CPU,
                                  method=method))
                if nvme:
                    out.append(Family(Engine.DEEPSPEED, zero=3, offload_optimizer=Offload.NVME,
                                      offload_param=Offload.CPU, method=method))
                    out.append(Family(Engine.DEEPSPEED, zero=3, offload_optimizer=Offload.NVME,
                                      offload_param=Offload.NVME, method=method))
        if world > 1:
            shardings = [FsdpSharding.FULL_SHARD] if adapters else [FsdpSharding.FULL_SHARD, FsdpSharding.SHARD_GRAD_OP]
            if start.cluster.nodes > 1 and not adapters:
                shardings.append(FsdpSharding.HYBRID_SHARD)
            for engine in (Engine.FSDP, Engine.FSDP2):
                for sharding in shardings:
                    out.append(Family(engine, fsdp_sharding=sharding, method=method))
                    if sharding is FsdpSharding.FULL_SHARD and not adapters:
                        out.append(Family(engine, fsdp_sharding=sharding, offload_param=Offload.CPU,
                                          offload_optimizer=Offload.CPU, method=method))
        if not model_parallel or adapters or world == 1:
            continue
        for pp in _divisors(world)[1:]:
            if pp > dec.num_layers:
                continue
            for stage in (0, 1):
                out.append(Family(Engine.DEEPSPEED, zero=stage, pp=pp, method=method))
        if dec.moe is not None:
            for ep in _divisors(gcd(dec.moe.num_experts, world))[1:]:
                for stage in (1, 2):
                    out.append(Family(Engine.DEEPSPEED, zero=stage, ep=ep, method=method))
        att = dec.attention
        for tp in _divisors(start.cluster.gpus_per_node)[1:]:
            if tp > 8 or att.num_heads % tp or (att.mla is None and att.num_kv_heads % tp):
                continue
            out.append(Family(Engine.FSDP2, tp=tp, method=method))
    return out


def base_precision(start: Scenario) -> Precision:
    """The starting precision, or fp16-mixed on a GPU without bf16."""
    p = start.train.precision
    if p in (Precision.BF16_MIXED, Precision.BF16_PURE) and not start.cluster.gpu.bf16:
        return Precision.FP16_MIXED
    return p


def variants(family: Family, start: Scenario, optimizer_changes: bool = True) -> list[Variant]:
    """The ladder of memory savers for ``family``, fewest changes first (module docstring)."""
    prec = base_precision(start)
    opt = start.train.optimizer
    if not family.client_optimizer:
        # DeepSpeed needs its own optimizer with offload (DeepSpeedCPUAdam, from the ds_config "optimizer"
        # block: no foreach temporaries); FSDP offload steps torch AdamW on the host.
        opt = Optimizer.ADAMW_FUSED if family.engine is Engine.DEEPSPEED else Optimizer.ADAMW
    base = Variant(opt, prec, start.parallel.expandable_segments, False)
    ladder = [base]
    saver = Variant(opt, prec, True, family.engine is Engine.DEEPSPEED)
    if saver != base:
        ladder.append(saver)
    if optimizer_changes and family.method in (Method.FULL, Method.FREEZE):
        if family.client_optimizer:
            for o in CLIENT_OPTIMIZER_SAVERS:
                if o is not opt:
                    ladder.append(Variant(o, prec, True, family.engine is Engine.DEEPSPEED))
        fp32_weights = family.engine in (Engine.SINGLE, Engine.DDP, Engine.FSDP, Engine.FSDP2)
        if fp32_weights and prec is Precision.BF16_MIXED and start.cluster.gpu.bf16:
            opts = [opt] + ([o for o in CLIENT_OPTIMIZER_SAVERS if o is not opt] if family.client_optimizer else [])
            for o in opts:
                ladder.append(Variant(o, Precision.BF16_PURE, True, False))
    return ladder


def frugal_variants(ladder: list[Variant]) -> list[Variant]:
    """The rungs tried first to rule a family out: the last rung of each optimizer kind."""
    last: dict[Optimizer, Variant] = {}
    for v in ladder:
        last[v.optimizer] = v
    frugal = [v for v in last.values() if v.optimizer in CLIENT_OPTIMIZER_SAVERS]
    return frugal or [ladder[-1]]


def ckpt_levels(start: Scenario) -> tuple[GradCkpt, ...]:
    """Checkpointing levels to try, most memory-saving first."""
    if start.train.grad_ckpt is GradCkpt.SELECTIVE:
        return (GradCkpt.FULL, GradCkpt.SELECTIVE, GradCkpt.NONE)
    return (GradCkpt.FULL, GradCkpt.NONE)


def per_rank_samples(global_batch: int, dp: int) -> tuple[int, bool]:
    """(samples per data-parallel rank per step, whether ``global_batch`` is kept exactly)."""
    if global_batch % dp == 0:
        return global_batch // dp, True
    return max(1, round(global_batch / dp)), False


def micro_batch_options(per_rank: int, max_micro_batch: int) -> list[int]:
    """Micro-batches that divide ``per_rank`` (so micro x accum = per_rank), ascending."""
    return [d for d in _divisors(per_rank) if d <= max_micro_batch] or [1]


def build_scenario(start: Scenario, family: Family, variant: Variant, ckpt: GradCkpt, micro_batch: int,
                   grad_accum: int) -> Scenario:
    """The scenario of one candidate (raises ``ScenarioError`` if the combination is invalid)."""
    train = start.train
    attention = train.attention
    if attention is Attention.FLASH and not start.cluster.gpu.flash_attention:
        attention = Attention.SDPA
    precision = variant.precision
    if family.method is Method.QLORA and precision is Precision.FP32:
        precision = Precision.BF16_MIXED if start.cluster.gpu.bf16 else Precision.FP16_MIXED
    new_train = replace(
        train, method=family.method, precision=precision, optimizer=variant.optimizer,
        micro_batch=micro_batch, grad_accum=grad_accum, grad_ckpt=ckpt, attention=attention,
    )
    par = start.parallel
    ds = par.deepspeed
    if family.engine is Engine.DEEPSPEED:
        if variant.auto_buckets and ds.reduce_bucket_size is not None and ds.reduce_bucket_size > start.model.decoder.hidden_size ** 2:
            ds = replace(ds, reduce_bucket_size=None)
        if family.zero == 3 and start.model.is_moe and not ds.moe_leaf_modules:
            ds = replace(ds, moe_leaf_modules=True)
    new_par = replace(
        par, engine=family.engine, zero=family.zero if family.engine is Engine.DEEPSPEED else par.zero,
        offload_optimizer=family.offload_optimizer, offload_param=family.offload_param,
        fsdp_sharding=family.fsdp_sharding, tp=family.tp, pp=family.pp, ep=family.ep, deepspeed=ds,
        expandable_segments=variant.expandable_segments,
    )
    return replace(start, train=new_train, parallel=new_par)
