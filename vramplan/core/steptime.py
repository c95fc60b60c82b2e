"""Step-time model: how long one optimizer step of a scenario takes, and its tokens per second.

Used by the planner to rank setups that fit; it is a first-order model, not a benchmark. Every
constant below is an *assumption* unless it cites a measurement, and every assumption that shapes a
result is returned in ``StepTime.assumptions`` so that the output shows it.

Terms (per rank, per optimizer step of ``grad_accum`` micro-steps):

- **compute**: training FLOPs per token = 6 N + 12 L H Q T (PaLM, Chowdhery et al. 2022, arXiv
  2204.02311 App. B; N = parameters used by one token, embedding lookup excluded; L H Q T = layers x
  query width x sequence length, the attention score/value matmuls). Backward of a frozen weight
  computes only the input gradient, so a frozen LLM (LoRA, QLoRA, freeze) costs 4 N per token.
  Full activation checkpointing re-runs the forward (+2 N + 4 L H Q T, i.e. 8 N in total;
  Korthikanti et al. 2022, arXiv 2205.05198 §5); selective recompute re-runs only attention
  (+4 L H Q T). Frozen vision towers run forward only: 2 x params x positions (+4 L h p^2 attention
  per ViT pass); ConvNeXt stages cost 2 x (49 d + 8 d^2) per block per position (Liu et al. 2022,
  arXiv 2201.03545: 7x7 depthwise conv + two 1x1 convs with 4x expansion). Time = FLOPs / (the GPU's
  dense bf16 FLOP/s x MFU). Tensor parallelism divides the compute by ``tp``; pipeline parallelism
  by ``pp`` and adds the bubble (pp - 1) / grad_accum (Narayanan et al. 2021, arXiv 2104.04473 §2.2).
- **communication** (ring collectives: an all-reduce moves 2 (N-1)/N x S per rank, an all-gather
  or reduce-scatter (N-1)/N x S; ZeRO paper, Rajbhandari et al. 2020, arXiv 1910.02054 §7):
  DDP all-reduces the gradients once per step (HF Trainer skips the sync inside accumulation);
  ZeRO-1 reduce-scatters gradients and all-gathers the updated 16-bit params once per step (2 Psi,
  as DP); ZeRO-2 reduce-scatters at every micro-step (its partitioned gradient buffer cannot
  accumulate unreduced gradients) and all-gathers once per step; ZeRO-3 and FSDP full-shard gather
  the params in forward and again in backward and reduce-scatter the gradients at every micro-step
  (3 Psi, 1.5x DP, ZeRO paper §7.2.2); SHARD_GRAD_OP gathers once (2 Psi). Tensor parallelism
  all-reduces activations 4 times per layer per micro-step (Megatron-LM, Shoeybi et al. 2019,
  arXiv 1909.08053 §3); expert parallelism all-to-alls the routed tokens 4 times per MoE layer.
- **offload**: PCIe copies of gradients and params to and from pinned host memory, the CPU
  optimizer (DeepSpeedCPUAdam is memory-bandwidth bound: it reads fp32 param, grad and both moments
  and writes param and moments back, ~30 B per parameter with the 16-bit copy; Ren et al. 2021,
  ZeRO-Offload, arXiv 2101.06840 §4.1), and NVMe reads/writes for ZeRO-Infinity.
- **overlap**: DeepSpeed ``overlap_comm`` and FSDP prefetching run collectives and offload copies
  alongside backward; ``OVERLAP_FRACTION`` of the smaller of compute and communication is hidden.
  The CPU optimizer step is not overlapped (ZeRO-Offload's delayed parameter update is off by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .hardware import GPUSpec
from .memory.params import lora_adapter_numel
from .model import ModelSpec, Part, VisionTowerSpec
from .scenario import (
    Engine,
    FsdpSharding,
    GradCkpt,
    Method,
    Offload,
    Optimizer,
    Precision,
    Scenario,
)

MFU_DATACENTER = 0.40
MFU_CONSUMER = 0.35
"""Model FLOPs utilisation assumed for HF Trainer-style fine-tuning. Assumption, not measured by
vramplan: large pre-training runs report 21-46 % (PaLM Table 3: GPT-3 21.3 %, Gopher 32.5 %,
MT-NLG 29.7 %, PaLM 46.2 %); consumer cards (no P2P, lower sustained clocks) get the lower figure."""

REFERENCE_FLOPS = 165_200_000_000_000
REFERENCE_PCIE_BYTES_PER_S = 31_508_000_000
REFERENCE_HBM_BYTES_PER_S = 1_008_000_000_000
"""Figures assumed for a GPU known only by its memory size (``24GiB``): RTX 4090-class bf16 rate,
PCIe Gen4 x16 and GDDR6X bandwidth (the catalog's rtx4090 entry)."""

NVLINK_EFFICIENCY = 0.4
"""Ring bus bandwidth as a share of the catalog's aggregate NVLink figure (A100 600 GB/s -> ~240 GB/s,
the order of the all-reduce bus bandwidth nccl-tests are reported to reach on 8x A100 SXM). Assumption."""
PCIE_P2P_EFFICIENCY = 0.7
"""Ring bus bandwidth over PCIe with peer-to-peer, as a share of one direction of x16. Assumption."""
HOST_STAGED_EFFICIENCY = 0.3
"""Without P2P (RTX 3090/40xx/50xx, NCCL_P2P_DISABLE=1) NCCL stages every transfer through host
shared memory: two PCIe hops and a host copy (engine-internals.md §8). Assumption."""
PCIE_COPY_EFFICIENCY = 0.8
"""Pinned host <-> GPU copies (offload) as a share of one PCIe direction. Assumption."""
INTER_NODE_BYTES_PER_S = 12_500_000_000
INTER_NODE_EFFICIENCY = 0.8
"""Network between nodes: 100 Gb/s per node (a common Ethernet/IB figure), 80 % usable. Assumption:
clusters with 4-8x 200-400 Gb/s NICs are several times faster."""
HOST_MEMORY_BYTES_PER_S_CONSUMER = 40_000_000_000
HOST_MEMORY_BYTES_PER_S_SERVER = 100_000_000_000
"""Host memory bandwidth the CPU optimizer gets per node: a desktop board (2-channel DDR5) vs a
server socket (8+ channels). Assumption."""
CPU_ADAM_BYTES_PER_PARAM = 30
"""fp32 param + grad + 2 moments read (16 B), param + moments written (12 B), 16-bit copy (2 B)."""
NVME_BYTES_PER_S = 3_000_000_000
"""ZeRO-Infinity NVMe throughput per node (one PCIe Gen4 SSD through libaio). Assumption."""
OVERLAP_FRACTION = 0.5
"""Share of min(compute, communication + offload copies) hidden by overlap. Assumption."""

GPU_OPTIMIZER_BYTES_PER_PARAM = {
    Optimizer.ADAMW: 32,
    Optimizer.ADAMW_FUSED: 30,
    Optimizer.ADAMW_8BIT: 14,
    Optimizer.PAGED_ADAMW_8BIT: 14,
    Optimizer.ADAFACTOR: 16,
    Optimizer.SGD: 12,
}
"""HBM bytes the optimizer step reads and writes per trainable parameter (fp32 master, grad, states)."""

NF4_DEQUANT_BYTES_PER_PARAM = 5
"""QLoRA: each use of a 4-bit weight reads ~0.52 B and writes and reads a bf16 copy (2 + 2 B)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepTime:
    """Time of one optimizer step on the slowest rank, and the tokens per second it gives."""

    compute_s: float
    """Forward + backward (+ recompute) of all micro-steps, pipeline bubble included."""
    comm_s: float
    """Collectives (DDP/ZeRO/FSDP, TP, EP, PP) before overlap."""
    offload_s: float
    """PCIe offload copies, NVMe traffic and the CPU optimizer step."""
    optimizer_s: float
    """GPU optimizer step (memory-bound)."""
    hidden_s: float
    """Communication hidden behind compute (subtracted)."""
    total_s: float
    tokens_per_step: int
    """Tokens of the whole data-parallel group per optimizer step."""
    tokens_per_s: float
    flops_per_rank: int
    """Training FLOPs one rank executes per optimizer step."""
    assumptions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _ModelCounts:
    """Parameter counts of a model that the step-time model needs (computed once per model)."""

    llm_total: int
    llm_matmul_active: int
    """Parameters one token multiplies through in the LLM (embedding lookup excluded, lm_head kept)."""
    expert_total: int
    parts: tuple[tuple[Part, int], ...]


@lru_cache(maxsize=32)
def _counts(model: ModelSpec) -> _ModelCounts:
    dec = model.decoder
    active = dec.num_active_params
    matmul = active - dec.embedding_numel + (dec.embedding_numel if dec.tie_embeddings else 0)
    experts = sum(dec.expert_numel(i) for i in dec.moe_layers)
    parts = tuple((p, model.part_numel(p)) for p in model.parts)
    return _ModelCounts(llm_total=dec.num_params, llm_matmul_active=matmul, expert_total=experts, parts=parts)


@lru_cache(maxsize=64)
def _lora_numel(model: ModelSpec, names: frozenset[str], r: int) -> int:
    dec = model.decoder
    return sum(lora_adapter_numel(dec.layer_linears(i), set(names), r) for i in range(dec.num_layers))


def gpu_rates(gpu: GPUSpec) -> tuple[int, int, int, bool]:
    """(dense bf16 FLOP/s, PCIe bytes/s, HBM bytes/s, whether reference figures were assumed)."""
    flops = gpu.bf16_dense_flops or REFERENCE_FLOPS
    pcie = gpu.pcie_bandwidth_bytes_per_s or REFERENCE_PCIE_BYTES_PER_S
    hbm = gpu.memory_bandwidth_bytes_per_s or REFERENCE_HBM_BYTES_PER_S
    return flops, pcie, hbm, not gpu.bf16_dense_flops


def mfu(gpu: GPUSpec) -> float:
    """Assumed model FLOPs utilisation for this GPU (``MFU_*``)."""
    return MFU_CONSUMER if not gpu.p2p else MFU_DATACENTER


def intra_node_bus_bytes_per_s(gpu: GPUSpec) -> float:
    """Ring bus bandwidth between GPUs of one node (``*_EFFICIENCY`` constants)."""
    _, pcie, _, _ = gpu_rates(gpu)
    if gpu.interconnect == "nvlink" and gpu.link_bandwidth_bytes_per_s:
        return gpu.link_bandwidth_bytes_per_s * NVLINK_EFFICIENCY
    if gpu.p2p:
        return (gpu.link_bandwidth_bytes_per_s or pcie) * PCIE_P2P_EFFICIENCY
    return pcie * HOST_STAGED_EFFICIENCY


def _vision_forward_flops(tower: VisionTowerSpec) -> int:
    """Forward FLOPs of one image through a tower (module docstring)."""
    if tower.kind == "convnext" and tower.stage_dims and tower.stage_depths:
        total = 0
        side = tower.image_size // max(1, tower.patch_size)
        for i, (d, depth) in enumerate(zip(tower.stage_dims, tower.stage_depths)):
            positions = (side >> i) ** 2
            total += 2 * depth * (49 * d + 8 * d * d) * positions
        return total * tower.passes_per_image
    p = tower.patches_per_pass
    per_pass = 2 * tower.num_params * p + 4 * tower.num_layers * tower.hidden_size * p * p
    return per_pass * tower.passes_per_image


def _trainable_and_total(scn: Scenario, counts: _ModelCounts) -> tuple[int, int, int, int]:
    """(trainable LLM, trainable other, all LLM, all other) parameters of the whole model."""
    t_llm = t_other = a_llm = a_other = 0
    for part, n in counts.parts:
        if part is Part.LLM:
            a_llm += n
            if scn.trains(part):
                t_llm += n
        else:
            a_other += n
            if scn.trains(part):
                t_other += n
    if scn.train.method in (Method.LORA, Method.QLORA):
        t_llm += _lora_numel(scn.model, frozenset(scn.lora_linear_names()), scn.train.lora.r)
    return t_llm, t_other, a_llm, a_other


def estimate_step_time(scn: Scenario) -> StepTime:
    """Step time of ``scn`` (module docstring for every term and its source)."""
    model, t, par, cl = scn.model, scn.train, scn.parallel, scn.cluster
    gpu = cl.gpu
    dec = model.decoder
    counts = _counts(model)
    flops_rate, pcie, hbm, assumed_rates = gpu_rates(gpu)
    util = mfu(gpu)
    tp, pp, ep = par.tp, par.pp, par.ep
    dp = scn.dp_degree
    micro_steps = t.grad_accum
    seq = t.seq_len
    tokens_rank = t.micro_batch * seq * micro_steps

    # -- compute ------------------------------------------------------------------------------
    n_mm = counts.llm_matmul_active
    attn = 12 * dec.num_layers * dec.attention.q_dim * seq
    llm_trains = scn.trains(Part.LLM)
    per_token = (6 * n_mm if llm_trains else 4 * n_mm) + attn
    if t.grad_ckpt is GradCkpt.FULL:
        per_token += 2 * n_mm + attn // 3
    elif t.grad_ckpt is GradCkpt.SELECTIVE:
        per_token += attn // 3
    llm_flops = per_token * tokens_rank // (tp * pp)
    images = t.micro_batch * micro_steps * t.images_per_sample if model.is_vlm else 0
    vision_flops = 0
    for tower in model.towers:
        fwd = _vision_forward_flops(tower)
        vision_flops += images * fwd * (3 if scn.trains(Part(tower.name)) else 1)
    for conn in model.connectors:
        vision_flops += images * 6 * conn.num_params * max(1, model.image_tokens)
    flops = llm_flops + (vision_flops if pp == 1 else vision_flops // pp)
    compute_s = flops / (flops_rate * util)
    if pp > 1:
        compute_s *= 1 + (pp - 1) / micro_steps
    if t.method is Method.QLORA:
        uses = 3 if t.grad_ckpt is GradCkpt.FULL else 2
        base = counts.llm_total // (tp * pp)
        compute_s += micro_steps * uses * base * NF4_DEQUANT_BYTES_PER_PARAM / hbm

    # -- parameters per rank ------------------------------------------------------------------
    t_llm, t_other, a_llm, a_other = _trainable_and_total(scn, counts)
    expert_share = 0
    if ep > 1 and counts.llm_total:
        expert_share = counts.expert_total * (ep - 1) // ep  # experts this rank does not hold
    psi_t = (t_llm - (expert_share if llm_trains else 0)) // (tp * pp) + t_other
    psi_all = (a_llm - expert_share) // (tp * pp) + a_other

    # -- communication ------------------------------------------------------------------------
    bus = intra_node_bus_bytes_per_s(gpu)
    inter = INTER_NODE_BYTES_PER_S * INTER_NODE_EFFICIENCY
    if cl.nodes > 1:
        bus = min(bus, inter)
    engine = par.engine
    comm_bytes = 0.0
    pcie_bytes = 0.0
    host_opt_params = 0  # parameters the CPU optimizer updates per node
    nvme_bytes = 0.0
    w_grad = 4 if t.fp32_params else 2  # DDP/FSDP grads follow the (autocast fp32) param dtype
    n = dp
    f = (n - 1) / n if n > 1 else 0.0
    comm_s_extra = 0.0
    if engine is Engine.SINGLE:
        pass
    elif engine is Engine.DDP or (engine in (Engine.FSDP, Engine.FSDP2) and par.fsdp_sharding is FsdpSharding.NO_SHARD):
        comm_bytes += 2 * f * psi_t * w_grad
    elif engine is Engine.DEEPSPEED:
        shard_t = psi_t / max(1, n)
        if par.zero == 0:
            comm_bytes += 2 * f * psi_t * (4 if t.precision is Precision.BF16_MIXED else 2)
        elif par.zero == 1:
            comm_bytes += 2 * f * psi_t * 2
        elif par.zero == 2:
            comm_bytes += (micro_steps + 1) * f * psi_t * 2
        else:
            comm_bytes += micro_steps * f * (2 * psi_all + psi_t) * 2
        if par.offload_optimizer is not Offload.NONE:
            grads_moves = micro_steps if par.zero >= 2 else 1
            pcie_bytes += (grads_moves + 1) * shard_t * 2
            host_opt_params += int(shard_t) * cl.gpus_per_node
            if par.offload_optimizer is Offload.NVME and par.zero == 3:
                nvme_bytes += 2 * 12 * shard_t * cl.gpus_per_node
        if par.zero == 3 and par.offload_param is not Offload.NONE:
            pcie_bytes += micro_steps * 2 * (psi_all / max(1, n)) * 2
            if par.offload_param is Offload.NVME:
                nvme_bytes += micro_steps * 2 * (psi_all / max(1, n)) * 2 * cl.gpus_per_node
    else:  # FSDP / FSDP2 sharded
        degree = n
        if par.fsdp_sharding is FsdpSharding.HYBRID_SHARD:
            degree = min(n, cl.gpus_per_node)
        fd = (degree - 1) / degree if degree > 1 else 0.0
        gathers = 1 if par.fsdp_sharding is FsdpSharding.SHARD_GRAD_OP else 2
        sharded_bytes = micro_steps * fd * (gathers * psi_all + psi_t) * 2
        if par.fsdp_sharding is FsdpSharding.HYBRID_SHARD and cl.nodes > 1:
            # shards are all-reduced across nodes; the gathers stay on the node's own links
            comm_s_extra += micro_steps * 2 * (cl.nodes - 1) / cl.nodes * (psi_t / degree) * 2 / inter
            comm_s_extra += sharded_bytes / intra_node_bus_bytes_per_s(gpu)
        else:
            comm_bytes += sharded_bytes
        if par.offload_param is not Offload.NONE or par.offload_optimizer is not Offload.NONE:
            wb = 4 if t.fp32_params else 2
            pcie_bytes += micro_steps * (gathers * psi_all + psi_t) / max(1, degree) * wb
            host_opt_params += int(psi_t / max(1, degree)) * cl.gpus_per_node
    act_bytes = t.micro_batch * seq * dec.hidden_size * 2
    if tp > 1:
        per_layer = 4 + (2 if t.grad_ckpt is GradCkpt.FULL else 0)
        layers = dec.num_layers // pp
        comm_bytes += micro_steps * per_layer * layers * 2 * (tp - 1) / tp * act_bytes
    if pp > 1:
        comm_bytes += micro_steps * 2 * act_bytes
    if ep > 1 and dec.moe is not None:
        moe_layers = len(dec.moe_layers) // pp
        comm_bytes += micro_steps * 4 * moe_layers * dec.moe.top_k * act_bytes * (ep - 1) / ep
    comm_s = comm_bytes / bus + comm_s_extra

    # -- offload and optimizer ----------------------------------------------------------------
    host_bw = HOST_MEMORY_BYTES_PER_S_CONSUMER if not gpu.p2p else HOST_MEMORY_BYTES_PER_S_SERVER
    offload_s = pcie_bytes / (pcie * PCIE_COPY_EFFICIENCY)
    offload_s += host_opt_params * CPU_ADAM_BYTES_PER_PARAM / host_bw
    offload_s += nvme_bytes / NVME_BYTES_PER_S
    optimizer_s = 0.0
    if not host_opt_params:
        shard = psi_t if engine in (Engine.SINGLE, Engine.DDP) else psi_t / max(1, n)
        optimizer_s = shard * GPU_OPTIMIZER_BYTES_PER_PARAM.get(t.optimizer, 32) / hbm

    hidden = OVERLAP_FRACTION * min(compute_s, comm_s + pcie_bytes / (pcie * PCIE_COPY_EFFICIENCY))
    total = compute_s + comm_s + offload_s + optimizer_s - hidden
    tokens_step = t.micro_batch * micro_steps * dp * seq
    return StepTime(
        compute_s=compute_s,
        comm_s=comm_s,
        offload_s=offload_s,
        optimizer_s=optimizer_s,
        hidden_s=hidden,
        total_s=total,
        tokens_per_step=tokens_step,
        tokens_per_s=tokens_step / total if total > 0 else 0.0,
        flops_per_rank=int(flops),
        assumptions=step_time_assumptions(scn, assumed_rates),
    )


def step_time_assumptions(scn: Scenario, assumed_rates: bool = False) -> tuple[str, ...]:
    """The assumptions behind a step time of ``scn``, as sentences for the output."""
    gpu = scn.cluster.gpu
    par = scn.parallel
    out = [
        (f"compute: 6N+12LHQT FLOPs/token (PaLM App. B; 8N with full checkpointing) at MFU {mfu(gpu):.2f} "
        f"of {gpu.display_name}'s dense bf16 rate (assumption)"),
    ]
    if assumed_rates:
        out.append(f"{gpu.display_name} has no FLOP/s or bandwidth in the catalog: RTX 4090-class figures assumed")
    if scn.cluster.world_size > 1:
        if gpu.interconnect == "nvlink":
            link = f"NVLink at {NVLINK_EFFICIENCY:.0%} of the aggregate link rate"
        elif gpu.p2p:
            link = f"PCIe peer-to-peer at {PCIE_P2P_EFFICIENCY:.0%} of one x16 direction"
        else:
            link = f"no P2P: NCCL through host memory at {HOST_STAGED_EFFICIENCY:.0%} of one PCIe direction"
        out.append(f"collectives: ring volumes (ZeRO paper §7) over {link}; {OVERLAP_FRACTION:.0%} of the "
                   "smaller of compute and communication overlapped (assumption)")
    if scn.cluster.nodes > 1:
        out.append(f"between nodes: {INTER_NODE_BYTES_PER_S * 8 / 1e9:.0f} Gb/s per node at "
                   f"{INTER_NODE_EFFICIENCY:.0%} (assumption; faster fabrics shorten the step)")
    if par.offload_optimizer is not Offload.NONE or par.offload_param is not Offload.NONE:
        host = HOST_MEMORY_BYTES_PER_S_CONSUMER if not gpu.p2p else HOST_MEMORY_BYTES_PER_S_SERVER
        out.append(f"offload: pinned PCIe copies at {PCIE_COPY_EFFICIENCY:.0%}; CPU Adam {CPU_ADAM_BYTES_PER_PARAM} B/param "
                   f"at {host / 1e9:.0f} GB/s host memory bandwidth per node, not overlapped (assumption)")
        if Offload.NVME in (par.offload_optimizer, par.offload_param):
            out.append(f"NVMe: {NVME_BYTES_PER_S / 1e9:.0f} GB/s per node (assumption)")
    if scn.train.method is Method.QLORA:
        out.append("QLoRA: every use of a 4-bit weight dequantizes it to bf16 (memory-bound, HBM rate)")
    if par.pp > 1:
        out.append("pipeline bubble (pp-1)/grad_accum (Narayanan et al. 2021 §2.2)")
    return tuple(out)
