"""Which parameters train, which stay frozen, and how many of each one rank holds.

This module turns a scenario into parameter *counts* per rank (after tensor, pipeline and expert
parallelism, before data-parallel sharding). ``states.py`` turns counts into bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..model import DecoderSpec, Linear, ModelSpec, Part
from ..scenario import Method, Scenario
from ..units import ceil_div

QLORA_BITS_PER_PARAM_NUMERATOR = 4127
"""NF4 with double quantization: 4 bits + 8-bit absmax per 64 + fp32 per 256 blocks = 4.127 bits/param
(Dettmers et al. 2023, arXiv 2305.14314 §3; engine-internals.md §7). Bytes = numel * 4127 / 8000."""


@dataclass(frozen=True, slots=True)
class RankParams:
    """Parameter counts on the most loaded rank, before data-parallel sharding."""

    trainable: int
    """Trainable parameters (full weights of trained parts, or LoRA adapters, plus trained connectors)."""
    frozen: int
    """Frozen parameters held in 16/32-bit."""
    frozen_quantized: int
    """Frozen linear weights held in 4-bit (QLoRA)."""
    trainable_expert: int
    """Part of ``trainable`` that is routed-expert weights (sharded over the expert-data-parallel group)."""
    frozen_expert: int
    largest_trainable_param: int
    """Largest single trainable tensor (ZeRO-1/2 backward transient, Adafactor step copy)."""
    largest_unit: int
    """Largest unit ZeRO-3 gathers at once: a module's direct params, or a whole MoE block."""
    largest_layer: int
    """Largest decoder layer (an FSDP unit when wrapping per layer)."""
    root_unit: int
    """FSDP root unit kept unsharded from forward to backward: embeddings, final norm, lm_head."""
    persistent: int
    """Small parameters ZeRO-3 never partitions (numel below the persistence threshold)."""
    largest_base_linear: int
    """Largest frozen linear weight (QLoRA dequantizes it to bf16 on every use)."""
    lora_linears: tuple[Linear, ...]
    """Linears that carry a LoRA adapter, per layer."""
    layers: int
    """Decoder layers on this rank."""
    has_embedding: bool
    has_lm_head: bool
    holds_vision: bool


def lora_adapter_numel(linears: list[Linear], names: set[str], r: int) -> int:
    """LoRA parameters of the adapted linears of one layer: r * (d_in + d_out) per copy (Hu et al. 2021 §4.1)."""
    return sum(lin.count * r * (lin.d_in + lin.d_out) for lin in linears if lin.name in names)


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """Contiguous layer ranges of each pipeline stage (the first stages take the remainder)."""
    base, extra = divmod(num_layers, pp)
    out, start = [], 0
    for s in range(pp):
        n = base + (1 if s < extra else 0)
        out.append(range(start, start + n))
        start += n
    return out


def persistence_threshold(scn: Scenario) -> int:
    """ZeRO-3 ``stage3_param_persistence_threshold``; HF "auto" = 10 * hidden (transformers integrations/deepspeed.py)."""
    knob = scn.parallel.deepspeed.stage3_param_persistence_threshold
    return 10 * scn.model.decoder.hidden_size if knob is None else knob


def rank_params(scn: Scenario) -> RankParams:
    """Parameter counts on the most loaded rank under the scenario's tp/pp/ep and training method.

    Tensor parallelism divides every decoder matrix by ``tp`` (Megatron column/row split, vocab-parallel
    embedding); norms are replicated. Pipeline stages hold contiguous layers, the first also the
    embedding and the vision side, the last the final norm and lm_head; the stage with the most
    parameters is the one reported. Expert parallelism holds ``num_experts / ep`` experts per rank.
    """
    method = scn.train.method
    lora_names = frozenset(scn.lora_linear_names()) if method in (Method.LORA, Method.QLORA) else frozenset()
    trains = frozenset(part for part in Part if scn.trains(part))
    par = scn.parallel
    return _rank_params(
        scn.model, par.tp, par.pp, par.ep, method, lora_names, scn.train.lora.r, trains, persistence_threshold(scn)
    )


@lru_cache(maxsize=4096)
def _rank_params(
    model: ModelSpec, tp: int, pp: int, ep: int, method: Method, lora_names: frozenset[str], lora_r: int,
    trains: frozenset[Part], threshold: int,
) -> RankParams:
    """``rank_params`` on its inputs alone (cached: the planner varies batch and engine, not these)."""
    dec = model.decoder
    llm_trains = Part.LLM in trains

    best: RankParams | None = None
    stages = stage_layers(dec.num_layers, pp)
    for s, layer_range in enumerate(stages):
        first, last = s == 0, s == len(stages) - 1
        dense = expert = lora = persistent = 0
        largest_param = largest_unit = largest_layer = largest_base_linear = 0
        for i in layer_range:
            layer_dense = layer_expert = 0
            moe_block = 0
            for lin in dec.layer_linears(i):
                per_copy = lin.weight_numel // tp + (lin.d_out // tp if lin.bias else 0)
                if lin.expert:
                    copies = ceil_div(lin.count, ep)
                    layer_expert += copies * per_copy
                    moe_block += copies * per_copy
                else:
                    layer_dense += lin.count * per_copy
                    largest_unit = max(largest_unit, per_copy)
                    if lin.bias and lin.d_out // tp <= threshold:
                        persistent += lin.d_out // tp
                    if lin.weight_numel // tp <= threshold:
                        persistent += lin.weight_numel // tp
                if lin.expert and dec.moe is not None:
                    # transformers 5 holds each layer's routed experts as fused 3-D parameters: gate_up_proj
                    # (E x 2i x h) and down_proj (E x h x i) -- one gradient of that size appears at once
                    # (traced: Mixtral-8x7B's 1.75 GiB gate_up_proj grad in the MoE backward)
                    fused = ceil_div(lin.count, ep) * (lin.weight_numel // tp)
                    largest_param = max(largest_param, fused * (1 if lin.name == dec.moe.expert_names[2] else 2))
                else:
                    largest_param = max(largest_param, lin.weight_numel // tp)
                largest_base_linear = max(largest_base_linear, lin.weight_numel // tp)
            norms = dec.norms_per_layer * dec.norm_numel_per_norm + dec.attention.norm_numel()
            if dec.is_moe_layer(i) and dec.moe is not None:
                norms += dec.moe.router_bias_numel
                gate = next(lin for lin in dec.layer_linears(i) if lin.name == "gate")
                moe_block += gate.weight_numel
            layer_dense += norms
            if dec.norm_numel_per_norm <= threshold:
                persistent += norms
            largest_unit = max(largest_unit, moe_block)
            largest_layer = max(largest_layer, layer_dense + layer_expert)
            dense += layer_dense
            expert += layer_expert
            lora += lora_adapter_numel(dec.layer_linears(i), set(lora_names), lora_r)
        root = 0
        if first:
            emb = dec.embedding_numel // tp
            dense += emb
            root += emb
            largest_unit = max(largest_unit, emb)
            largest_param = max(largest_param, emb)
        if last:
            head = dec.lm_head_numel // tp + dec.norm_numel_per_norm
            dense += head
            root += head
            if dec.norm_numel_per_norm <= threshold:
                persistent += dec.norm_numel_per_norm
            largest_unit = max(largest_unit, dec.lm_head_numel // tp)
            largest_param = max(largest_param, dec.lm_head_numel // tp)
        # Vision towers and connectors sit on the first stage, replicated across tp.
        vision_trainable = vision_frozen = 0
        if first:
            for part in (Part.VISION, Part.VISION_AUX, Part.PROJECTOR):
                n = model.part_numel(part)
                if part in trains:
                    vision_trainable += n
                else:
                    vision_frozen += n
            for c in model.connectors:
                for lin in c.linears:
                    largest_unit = max(largest_unit, lin.weight_numel)

        if llm_trains:
            trainable, frozen, frozen_q = dense + expert, 0, 0
            t_exp, f_exp = expert, 0
        else:
            trainable, t_exp, f_exp = 0, 0, expert
            frozen, frozen_q = dense + expert, 0
            if method is Method.QLORA:
                linear_numel = _linear_numel(dec, layer_range, tp, ep)
                frozen_q = linear_numel
                frozen = dense + expert - linear_numel
            trainable += lora
        trainable += vision_trainable
        frozen += vision_frozen
        if llm_trains:
            largest_trainable = largest_param
        else:
            largest_trainable = max(
                [lin.weight_numel for c in model.connectors for lin in c.linears] or [0]
            ) if first else 0
        lora_linears = tuple(lin for lin in dec.layer_linears(layer_range[0]) if lin.name in lora_names) if layer_range else ()
        cand = RankParams(
            trainable=trainable,
            frozen=frozen,
            frozen_quantized=frozen_q,
            trainable_expert=t_exp,
            frozen_expert=f_exp,
            largest_trainable_param=largest_trainable,
            largest_unit=largest_unit,
            largest_layer=largest_layer,
            root_unit=root,
            persistent=min(persistent, dense),
            largest_base_linear=largest_base_linear,
            lora_linears=lora_linears,
            layers=len(layer_range),
            has_embedding=first,
            has_lm_head=last,
            holds_vision=first and model.is_vlm,
        )
        if best is None or _weight(cand) > _weight(best):
            best = cand
    assert best is not None  # pp >= 1 always yields a stage
    return best


def _weight(rp: RankParams) -> int:
    """Rough per-rank byte weight used to pick the most loaded pipeline stage (16 B trainable, 2 B frozen)."""
    return 16 * rp.trainable + 2 * rp.frozen + rp.frozen_quantized // 2 + (1 if rp.has_lm_head else 0)


def _linear_numel(dec: DecoderSpec, layer_range: range, tp: int, ep: int) -> int:
    """Weights of the decoder linears (what bitsandbytes quantizes; embeddings and lm_head stay 16-bit)."""
    total = 0
    for i in layer_range:
        for lin in dec.layer_linears(i):
            if lin.name == "gate":
                continue
            copies = ceil_div(lin.count, ep) if lin.expert else lin.count
            total += copies * (lin.weight_numel // tp)
    return total


def quantized_bytes(numel: int) -> int:
    """Bytes of ``numel`` NF4 weights with double-quantized absmax (4.127 bits each)."""
    return ceil_div(numel * QLORA_BITS_PER_PARAM_NUMERATOR, 8000)
