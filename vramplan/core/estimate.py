"""Compose the cost model into per-phase breakdowns of the most loaded GPU, totals, host RAM and the verdict.

Phases (steady state, i.e. from the second step on, when the lazily created optimizer states exist —
engine-internals.md §1.3 item 3 and §9 item 2):

- ``forward``: model states + persistent grads + saved activations + the logits/loss peak at the end
  of forward + forward gathers; or, earlier, the no-grad vision towers' transient.
- ``backward``: the larger of its start (all saved activations + cross-entropy backward) and its
  end (full gradients + one recomputed layer + activation-gradient temporaries), with gathers and
  buckets.
- ``optimizer``: model states + full gradients + step temporaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .breakdown import Breakdown
from .memory.activations import llm_activations, vision_activations
from .memory.buffers import engine_buffers
from .memory.overhead import (
    CUDA_CONTEXT_BYTES,
    allocator_slack_bytes,
    cublas_bytes,
    nccl_bytes,
)
from .memory.params import RankParams, lora_adapter_numel, rank_params
from .memory.states import StateBytes, host_buffer_factor, model_state_bytes
from .model import Part
from .scenario import Engine, Method, Offload, Precision, Scenario
from .units import GiB, ceil_div

PROCESS_HOST_BASE_BYTES = 3 * GiB
"""Host RSS of one training process before any model bytes (Python, torch and CUDA libraries, data
loader workers). Heuristic, not measured by us; the host-RAM figure is a lower bound."""

NVME_OPTIMIZER_BUFFERS = 4
"""DeepSpeed ``offload_optimizer.buffer_count`` default (offload_config.py)."""
NVME_PARAM_BUFFER_COUNT = 5
NVME_PARAM_BUFFER_ELEMENTS = 100_000_000
"""DeepSpeed ``offload_param.buffer_count`` and ``buffer_size`` defaults (offload_config.py)."""

PHASES = ("forward", "backward", "optimizer")


@dataclass(frozen=True, slots=True)
class PhaseEstimate:
    """One phase of a training step on the most loaded GPU."""

    phase: str
    breakdown: Breakdown

    @property
    def allocated_bytes(self) -> int:
        """torch.cuda.max_memory_allocated within the phase."""
        return self.breakdown.allocated_bytes

    @property
    def reserved_bytes(self) -> int:
        """torch.cuda.max_memory_reserved within the phase."""
        return self.breakdown.reserved_bytes

    @property
    def device_used_bytes(self) -> int:
        """nvidia-smi within the phase."""
        return self.breakdown.device_used_bytes


@dataclass(frozen=True, slots=True)
class ParamSummary:
    """Parameter counts of the model and of the most loaded rank."""

    total: int
    active: int
    trainable: int
    frozen: int
    rank_trainable: int
    rank_frozen: int


@dataclass(frozen=True, slots=True)
class Estimate:
    """The analytical estimate of one scenario."""

    scenario: Scenario
    phases: tuple[PhaseEstimate, ...]
    peak_phase: str
    capacity_bytes: int
    headroom_bytes: int
    host: dict[str, int]
    host_ram_bytes: int
    params: ParamSummary
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def peak(self) -> PhaseEstimate:
        """The phase with the highest device use."""
        return next(p for p in self.phases if p.phase == self.peak_phase)

    @property
    def peak_allocated_bytes(self) -> int:
        """Max over phases of allocated bytes."""
        return max(p.allocated_bytes for p in self.phases)

    @property
    def peak_reserved_bytes(self) -> int:
        """Max over phases of reserved bytes (the allocator never gives segments back by itself)."""
        return max(p.reserved_bytes for p in self.phases)

    @property
    def device_used_bytes(self) -> int:
        """nvidia-smi at the peak: reserved + CUDA context + NCCL."""
        return max(p.device_used_bytes for p in self.phases)

    @property
    def usable_bytes(self) -> int:
        """Capacity minus headroom."""
        return self.capacity_bytes - self.headroom_bytes

    @property
    def fits_gpu(self) -> bool:
        """Device use at the peak stays within usable capacity."""
        return self.device_used_bytes <= self.usable_bytes

    @property
    def fits_host(self) -> bool | None:
        """Host RAM need within the node's RAM; None when the RAM size is unknown."""
        ram = self.scenario.cluster.host_ram_bytes
        return None if ram is None else self.host_ram_bytes <= ram

    @property
    def fits(self) -> bool:
        """Fits on the GPU and (when known) in host RAM."""
        return self.fits_gpu and self.fits_host is not False

    @property
    def margin_bytes(self) -> int:
        """Usable capacity minus device use (negative: over by that much)."""
        return self.usable_bytes - self.device_used_bytes


def _trainable_total(scn: Scenario, rp: RankParams) -> tuple[int, int]:
    """(trainable, frozen) parameter counts of the whole model (LoRA adapters scaled from the rank)."""
    model = scn.model
    trainable = frozen = 0
    for part in model.parts:
        n = model.part_numel(part)
        if scn.trains(part):
            trainable += n
        else:
            frozen += n
    if scn.train.method in (Method.LORA, Method.QLORA):
        dec = model.decoder
        names = scn.lora_linear_names()
        trainable += sum(lora_adapter_numel(dec.layer_linears(i), names, scn.train.lora.r) for i in range(dec.num_layers))
    return trainable, frozen


def _notes(scn: Scenario) -> list[str]:
    """Caveats the user should see next to the numbers."""
    notes: list[str] = []
    gpu = scn.cluster.gpu
    par = scn.parallel
    if scn.train.precision in (Precision.BF16_MIXED, Precision.BF16_PURE) and not gpu.bf16:
        notes.append(f"{gpu.display_name} has no bf16 support: use fp16-mixed (with loss scaling).")
    if scn.train.attention.value == "flash" and not gpu.flash_attention:
        notes.append(f"{gpu.display_name} cannot run FlashAttention-2; sdpa is the best available.")
    if par.engine is Engine.DEEPSPEED and par.zero < 3 and par.offload_param is not Offload.NONE:
        notes.append("offload_param only works with ZeRO stage 3; ignored at this stage.")
    if scn.model.is_moe and par.engine is Engine.DEEPSPEED and par.zero == 3:
        notes.append(
            "ZeRO-3 gathers a whole MoE block at once (set_z3_leaf_modules or fused experts): "
            "all experts of a layer are counted in buffers/gathered_params."
        )
    if par.engine in (Engine.FSDP, Engine.FSDP2) and scn.train.grad_accum > 1:
        notes.append(
            "FSDP with gradient accumulation is estimated with accelerate's sync_each_batch=True (sharded "
            "grads, as vramplan emits it); HF Trainer's default no_sync accumulates unsharded grads instead."
        )
    if scn.activation_profile is not None:
        notes.append(f"decoder-layer activations from the stored profile of {scn.activation_profile.model} "
                     f"({scn.activation_profile.settings}, vramplan calibrate), not from the formulas")
    if par.tp > 1 or par.pp > 1:
        notes.append("tp/pp are modelled Megatron-style; HF Trainer with DeepSpeed ZeRO supports neither.")
    if scn.model.is_vlm and scn.train.images_per_sample and scn.train.seq_len < scn.model.image_tokens:
        notes.append(
            f"seq_len {scn.train.seq_len} is shorter than the {scn.model.image_tokens} image tokens of one image."
        )
    return notes


def estimate_scenario(scn: Scenario) -> Estimate:
    """Per-GPU peak memory of ``scn`` on its most loaded rank, per phase (module docstring)."""
    rp = rank_params(scn)
    states = model_state_bytes(scn, rp)
    acts = llm_activations(scn, rp)
    vis = vision_activations(scn, rp)
    buf = engine_buffers(scn, rp, states)
    gpu = scn.cluster.gpu
    cublas = cublas_bytes(gpu)
    context = CUDA_CONTEXT_BYTES
    nccl = nccl_bytes(scn)

    base = {
        "activations/vision": vis.inputs,
        "model_states/params": states.params,
        "model_states/master": states.master,
        "model_states/optimizer": states.optimizer,
        "overhead/cublas": cublas,
        "overhead/cuda_context": context,
        "overhead/nccl": nccl,
    }

    def finish(items: dict[str, int]) -> Breakdown:
        # Persistent model states are allocated once and pack tightly; the slack comes from the
        # churn of activations, buffers, temporaries and gathers (engine-internals.md §6).
        items["overhead/allocator"] = allocator_slack_bytes(scn, items)
        return Breakdown(items)

    # forward: end of forward, or the vision towers' transient at its start. DDP buckets exist from the
    # DDP constructor on (reducer.cpp initialize_buckets); MoE routing temporaries are freed inside their
    # layer, before the loss (traced).
    fwd_end = dict(base)
    fwd_end.update(
        {
            "model_states/grads": states.grads_before_backward,
            "activations/llm": acts.saved + acts.forward_extra,
            "activations/vision": vis.saved_tower + vis.inputs,
            "activations/projector": vis.saved_connector,
            "activations/logits_loss": acts.logits_forward,
            "buffers/zero_buckets": buf.zero_buckets_between_steps,
            "buffers/gathered_params": buf.gathered_forward,
            "buffers/ddp_buckets": buf.ddp_buckets,
        }
    )
    fwd_tower = dict(base)
    fwd_tower.update(
        {
            "model_states/grads": states.grads_before_backward,
            "buffers/zero_buckets": buf.zero_buckets_between_steps,
            "activations/vision": vis.tower_transient + vis.inputs,
            "buffers/gathered_params": buf.gathered_forward,
            "buffers/ddp_buckets": buf.ddp_buckets,
        }
    )
    fwd_layer = dict(base)
    fwd_layer.update(
        {
            "model_states/grads": states.grads_before_backward,
            "activations/llm": acts.saved - acts.final_norm + acts.forward_layer,
            "activations/vision": vis.saved_tower + vis.inputs,
            "activations/projector": vis.saved_connector,
            "buffers/zero_buckets": buf.zero_buckets_between_steps,
            "buffers/gathered_params": buf.gathered_at_forward_layer,
            "buffers/ddp_buckets": buf.ddp_buckets,
            "temporaries/dequant": buf.dequant,
        }
    )
    forward = max((finish(fwd_end), finish(fwd_tower), finish(fwd_layer)), key=lambda b: b.device_used_bytes)

    # backward (traced, tests/torch/test_crossval.py): its start (saved activations + cross-entropy
    # backward), the first layers (final-norm backward, or the top layer recomputed with its MLP
    # gradients, next to lm_head's gradient), the bottom layer (every layer's gradient but the embedding's
    # and its own, one layer's activations and temporaries), its end (full gradients).
    top_grads, bottom_grads = growing_grads(scn, rp, states)
    engine_bwd = {
        "buffers/zero_buckets": buf.zero_buckets,
        "buffers/gathered_params": buf.gathered_backward,
        "buffers/ddp_buckets": buf.ddp_buckets,
        "temporaries/dequant": buf.dequant,
    }
    bwd_start = dict(base)
    bwd_start.update(engine_bwd)
    bwd_start.update(
        {
            "buffers/gathered_params": buf.gathered_at_backward_start,
            "model_states/grads": states.grads_before_backward,
            "activations/llm": acts.saved,
            "activations/vision": vis.saved_tower + vis.inputs,
            "activations/projector": vis.saved_connector,
            "activations/logits_loss": acts.logits_backward,
            "temporaries/dequant": 0,  # a 4-bit weight is dequantized inside its matmul, not at the loss
        }
    )
    top_saved, top_recompute, top_temp = acts.top_of_backward
    bottom_kept, bottom_recompute, bottom_temp = acts.bottom_of_backward
    bwd_top = dict(base)
    bwd_top.update(engine_bwd)
    bwd_top.update(
        {
            "model_states/grads": top_grads,
            "buffers/gathered_params": buf.gathered_at_backward_top,
            "activations/llm": top_saved,
            "activations/vision": vis.saved_tower + vis.inputs,
            "activations/projector": vis.saved_connector,
            "temporaries/recompute": top_recompute,
            "temporaries/backward": top_temp + buf.grad_transient,
        }
    )
    bwd_bottom = dict(base)
    bwd_bottom.update(engine_bwd)
    bwd_bottom.update(
        {
            "model_states/grads": bottom_grads,
            "buffers/gathered_params": buf.gathered_at_backward_bottom,
            "activations/llm": bottom_kept,
            "activations/vision": vis.saved_tower + vis.inputs,
            "activations/projector": vis.saved_connector,
            "temporaries/recompute": bottom_recompute,
            "temporaries/backward": bottom_temp + buf.grad_transient,
        }
    )
    bwd_end = dict(base)
    bwd_end.update(engine_bwd)
    last = last_grad_in_flight(scn, rp, states)
    bwd_end.update({"model_states/grads": states.grads_full - last, "temporaries/backward": buf.grad_transient + last,
                    "temporaries/dequant": 0})
    backward = max((finish(bwd_start), finish(bwd_top), finish(bwd_bottom), finish(bwd_end)),
                   key=lambda b: b.device_used_bytes)

    opt = dict(base)
    opt.update(
        {
            "model_states/grads": states.grads_full,
            "buffers/zero_buckets": buf.zero_buckets,
            "buffers/ddp_buckets": buf.ddp_buckets,
            "temporaries/optimizer_step": buf.optimizer_step,
        }
    )
    optimizer = finish(opt)

    phases = (
        PhaseEstimate("forward", forward),
        PhaseEstimate("backward", backward),
        PhaseEstimate("optimizer", optimizer),
    )
    peak_phase = max(phases, key=lambda p: p.device_used_bytes).phase

    host = host_breakdown(scn, rp, states)
    host_total = host["host/process_base"] + max(
        host["host/model_load"], host["host/offload_optimizer"] + host["host/offload_params"] + host["host/checkpoint_save"]
    )
    capacity = gpu.memory_bytes
    headroom = max(int(capacity * scn.headroom_fraction), scn.min_headroom_bytes)
    trainable, frozen = _trainable_total(scn, rp)
    params = ParamSummary(
        total=scn.model.num_params,
        active=scn.model.num_active_params,
        trainable=trainable,
        frozen=frozen,
        rank_trainable=rp.trainable,
        rank_frozen=rp.frozen + rp.frozen_quantized,
    )
    return Estimate(
        scenario=scn,
        phases=phases,
        peak_phase=peak_phase,
        capacity_bytes=capacity,
        headroom_bytes=headroom,
        host=host,
        host_ram_bytes=host_total,
        params=params,
        notes=tuple(_notes(scn)),
    )


def growing_grads(scn: Scenario, rp: RankParams, states: StateBytes) -> tuple[int, int]:
    """Gradient bytes present (top of backward, bottom layer) where each parameter's gradient stays once
    computed (single GPU, DDP, ZeRO-0/1 full buffers aside, FSDP shards): lm_head's first; at the bottom layer
    every gradient but the embedding's, that layer's own and the vision side's (computed last)."""
    growth = states.grads_full - states.grads_persistent
    if growth <= 0 or rp.trainable <= 0:
        return states.grads_persistent, states.grads_persistent
    dec = scn.model.decoder
    tp = scn.parallel.tp
    vision = sum(scn.model.part_numel(p) for p in (Part.VISION, Part.VISION_AUX, Part.PROJECTOR)
                 if scn.trains(p)) if rp.holds_vision else 0
    if scn.trains(Part.LLM):
        head = (dec.lm_head_numel or dec.embedding_numel) // tp + dec.norm_numel_per_norm if rp.has_lm_head else 0
        embedding = dec.embedding_numel // tp if rp.has_embedding and not dec.tie_embeddings else 0
        layer = rp.largest_layer
    else:
        head = embedding = 0
        layer = (rp.trainable - vision) // max(1, rp.layers)
    top = growth * min(head, rp.trainable) // rp.trainable
    rest = max(0, rp.trainable - vision - embedding - layer)
    bottom = growth * rest // rp.trainable
    return states.grads_persistent + top, states.grads_persistent + bottom


def last_grad_in_flight(scn: Scenario, rp: RankParams, states: StateBytes) -> int:
    """The embedding's gradient at the very end of backward: created by the embedding backward and not yet
    accumulated into ``.grad`` (traced: ``embedding_dense_backward`` output live next to every other grad);
    only where gradients stay per parameter (the growing share of ``growing_grads``)."""
    growth = states.grads_full - states.grads_persistent
    dec = scn.model.decoder
    if growth <= 0 or not scn.trains(Part.LLM) or not rp.has_embedding or dec.tie_embeddings or rp.trainable <= 0:
        return 0
    return growth * (dec.embedding_numel // scn.parallel.tp) // rp.trainable


def host_breakdown(scn: Scenario, rp: RankParams, states: StateBytes) -> dict[str, int]:
    """Host RAM of one node (engine-internals.md §1.3, §2; DeepSpeed's 1.5 host buffer factor).

    - process base: ``PROCESS_HOST_BASE_BYTES`` per rank;
    - model load: without ZeRO-3 ``zero.Init`` every process materialises the whole model in its load
      dtype (2 B) before moving it to the GPU;
    - offloaded optimizer (fp32 master + states + fp32 grads) and params, per rank, x 1.5;
    - checkpoint save: ZeRO-3 consolidation gathers a 16-bit state dict on rank 0 (2 B x params).
    """
    ranks = scn.cluster.gpus_per_node
    par = scn.parallel
    zero3 = par.engine is Engine.DEEPSPEED and par.zero == 3
    sharded_init = (zero3 and par.deepspeed.zero_init) or par.engine in (Engine.FSDP, Engine.FSDP2)
    load_per_rank = (rp.trainable + rp.frozen) * 2 + rp.frozen_quantized // 2
    model_load = 0 if sharded_init else ranks * load_per_rank
    save = 0
    if zero3 or par.engine in (Engine.FSDP, Engine.FSDP2):
        save = 2 * scn.model.num_params if scn.trains(Part.LLM) or scn.train.method is Method.FULL else 0
    host_opt = host_buffer_factor(states.host_optimizer)
    host_par = host_buffer_factor(states.host_params)
    if par.offload_optimizer is Offload.NVME and states.offloads_optimizer:
        # ZeRO-Infinity keeps the states on NVMe; the optimizer swapper pins buffer_count (4) buffers of
        # the largest sub-group in fp32 (swap_tensor/optimizer_utils.py; engine-internals.md §2).
        t_shard = ceil_div(rp.trainable, max(1, states.dp_shard))
        host_opt = NVME_OPTIMIZER_BUFFERS * min(par.deepspeed.sub_group_size, t_shard) * 4
    if par.offload_param is Offload.NVME and states.offloads_params:
        # the param swapper pins buffer_count x buffer_size 16-bit elements (5 x 1e8 x 2 B by default).
        host_par = NVME_PARAM_BUFFER_COUNT * NVME_PARAM_BUFFER_ELEMENTS * 2
    return {
        "host/process_base": ranks * PROCESS_HOST_BASE_BYTES,
        "host/model_load": model_load,
        "host/offload_optimizer": ranks * host_opt,
        "host/offload_params": ranks * host_par,
        "host/checkpoint_save": save,
    }
