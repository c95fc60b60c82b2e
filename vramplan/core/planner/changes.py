"""What a candidate changes against the starting scenario, as short sentences for the plan table.

A change of training method (full -> LoRA/QLoRA) always starts with ``method`` so that callers and
tests can recognise it (``Plan.changes_method``).
"""

from __future__ import annotations

from ..scenario import Engine, Method, Offload, Optimizer, Scenario


def engine_label(scn: Scenario) -> str:
    """``DeepSpeed ZeRO-3``, ``FSDP2 full-shard``, ``DDP``, ``single GPU``."""
    p = scn.parallel
    if p.engine is Engine.DEEPSPEED:
        return f"DeepSpeed ZeRO-{p.zero}"
    if p.engine in (Engine.FSDP, Engine.FSDP2):
        return f"{p.engine.value.upper()} {p.fsdp_sharding.value}"
    if p.engine is Engine.DDP:
        return "DDP"
    return "single GPU"


def offload_label(scn: Scenario) -> str:
    """``optimizer cpu, params cpu`` / ``none`` (FSDP offloads both at once)."""
    p = scn.parallel
    parts = []
    if p.offload_optimizer is not Offload.NONE:
        parts.append(f"optimizer {p.offload_optimizer.value}")
    if p.offload_param is not Offload.NONE and (p.engine is not Engine.DEEPSPEED or p.zero == 3):
        parts.append(f"params {p.offload_param.value}")
    return ", ".join(parts) or "none"


def method_label(scn: Scenario) -> str:
    """``full``, ``lora r=16``, ``qlora r=16``."""
    t = scn.train
    if t.method in (Method.LORA, Method.QLORA):
        return f"{t.method.value} r={t.lora.r}"
    return str(t.method.value)


def describe_changes(start: Scenario, scn: Scenario) -> tuple[str, ...]:
    """Differences of ``scn`` from ``start`` in the order a user reads them."""
    out: list[str] = []
    if method_label(start) != method_label(scn):
        out.append(f"method {method_label(start)} -> {method_label(scn)} (change of training method)")
    if engine_label(start) != engine_label(scn):
        out.append(f"{engine_label(start)} -> {engine_label(scn)}")
    if offload_label(start) != offload_label(scn):
        out.append(f"offload {offload_label(start)} -> {offload_label(scn)}")
    for name in ("tp", "pp", "ep"):
        a, b = getattr(start.parallel, name), getattr(scn.parallel, name)
        if a != b:
            out.append(f"{name} {a} -> {b}")
    st, t = start.train, scn.train
    if (st.micro_batch, st.grad_accum) != (t.micro_batch, t.grad_accum) or start.dp_degree != scn.dp_degree:
        g0 = st.micro_batch * st.grad_accum * start.dp_degree
        g1 = t.micro_batch * t.grad_accum * scn.dp_degree
        kept = f"global batch {g1} kept" if g0 == g1 else f"global batch {g0} -> {g1}"
        parts = []
        if st.micro_batch != t.micro_batch:
            parts.append(f"micro-batch {st.micro_batch} -> {t.micro_batch}")
        if st.grad_accum != t.grad_accum:
            parts.append(f"grad accum {st.grad_accum} -> {t.grad_accum}")
        out.append(", ".join(parts or [f"micro-batch {t.micro_batch}, grad accum {t.grad_accum}"]) + f" ({kept})")
    if st.grad_ckpt is not t.grad_ckpt:
        out.append(f"gradient checkpointing {st.grad_ckpt.value} -> {t.grad_ckpt.value}")
    if st.precision is not t.precision:
        why = " (GPU has no bf16)" if not scn.cluster.gpu.bf16 and "bf16" in st.precision.value else ""
        out.append(f"precision {st.precision.value} -> {t.precision.value}{why}")
    if st.optimizer is not t.optimizer:
        ds_cpu_adam = (scn.parallel.engine is Engine.DEEPSPEED and scn.parallel.offload_optimizer is not Offload.NONE
                       and t.optimizer is Optimizer.ADAMW_FUSED)
        if ds_cpu_adam:
            out.append("optimizer: DeepSpeed CPU Adam (ds_config optimizer block, required with optimizer offload)")
        else:
            out.append(f"optimizer {st.optimizer.value} -> {t.optimizer.value}")
    if st.attention is not t.attention:
        out.append(f"attention {st.attention.value} -> {t.attention.value}")
    if start.parallel.expandable_segments != scn.parallel.expandable_segments:
        out.append(f"PYTORCH_CUDA_ALLOC_CONF=expandable_segments:{scn.parallel.expandable_segments}")
    a, b = start.parallel.deepspeed, scn.parallel.deepspeed
    if scn.parallel.engine is Engine.DEEPSPEED:
        if a.reduce_bucket_size != b.reduce_bucket_size:
            out.append(f"reduce_bucket_size {a.reduce_bucket_size} -> {b.reduce_bucket_size or 'auto (hidden^2)'}")
        if a.moe_leaf_modules != b.moe_leaf_modules:
            out.append("set_z3_leaf_modules on the MoE block")
    if start.cluster.world_size != scn.cluster.world_size or start.cluster.gpu.id != scn.cluster.gpu.id:
        out.append(f"GPUs {start.cluster.world_size}x {start.cluster.gpu.id} -> {scn.cluster.world_size}x {scn.cluster.gpu.id}")
    return tuple(out)
