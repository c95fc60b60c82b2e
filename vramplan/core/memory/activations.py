"""Activation memory: what autograd saves for backward, per token, per layer, as HF transformers code runs.

Derivation (engine-internals.md §5, re-derived and checked against a traced transformers 5.24
``LlamaDecoderLayer`` in bf16 on the CPU with ``saved_tensors_hooks``: 33,196 B/token/layer for
h=512, kv=128, i=1408, 8 heads, of which 8,192 B were the layer's own weights; the remaining
25,004 B/token match this module's 20h + 4kv + 8i + 4a + 2*head_dim within 0.1 %):

- RMSNorm (HF): ``x.to(fp32)`` is saved by ``pow`` and ``mul`` (4h); the normalised bf16 tensor is
  saved by the weight multiply only when the weight trains (2h); the output is saved by the next
  linears when they need a weight gradient (2h).
- RoPE multiplies by cos/sin, which need no gradient, so it saves only cos/sin (per position, shared).
- Flash / SDPA-flash saves q_rot, k_rot, v, the output and the fp32 log-sum-exp (4 B per head).
- Gated MLP saves gate out (SiLU input), SiLU out and up out (both saved by their product) and the
  product (saved by down_proj when its weight trains): 8i when trained, 6i when frozen.
- Eager attention adds the fp32 softmax (4 a s) and its bf16 cast (2 a s) per token, and expands
  GQA keys/values (repeat_kv); SDPA with a padding mask also expands them (transformers
  integrations/sdpa_attention.py ``use_gqa_in_sdpa``).
- Gradient checkpointing (HF, one decoder layer per checkpoint) keeps each layer's input and
  recomputes one layer during backward (Korthikanti et al. 2022, arXiv 2205.05198 §4: 2sbh per layer).
- Logits + cross-entropy (transformers ``ForCausalLMLoss``): bf16 logits (2TV), fp32 upcast (4TV),
  log-softmax output saved (4TV); backward holds saved + incoming grad + its output (12TV).
- Frozen vision towers run under ``torch.no_grad()`` (MGM clip_encoder.py, openclip_encoder.py):
  only their outputs are kept, as inputs of trainable connectors.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import ConnectorSpec, DecoderSpec, Linear, Part, VisionTowerSpec
from ..scenario import Attention, Engine, GradCkpt, Loss, Method, Precision, Scenario
from ..units import ceil_div
from .params import RankParams


@dataclass(frozen=True, slots=True)
class LayerFlags:
    """What in one decoder layer needs its inputs saved."""

    weights_train: bool
    lora: frozenset[str]
    saves_linear_inputs: bool
    """bitsandbytes 4-bit matmuls save their input whether or not the weight trains (QLoRA)."""
    autocast: bool
    """fp32 weights under bf16/fp16 autocast (HF Trainer without DeepSpeed)."""
    act_bytes: int
    lora_dropout: bool
    lora_r: int
    lora_cast_copy: bool
    """PEFT adapters in fp32 (not cast by DeepSpeed): each adapter keeps its own cast of the input."""


def activation_dtype_bytes(scn: Scenario) -> int:
    """Bytes per activation element: 4 in fp32 training, else 2."""
    return 4 if scn.train.precision is Precision.FP32 else 2


def layer_flags(scn: Scenario) -> LayerFlags:
    """Flags for the decoder layers of this scenario."""
    method = scn.train.method
    llm_trains = scn.trains(Part.LLM)
    lora = frozenset(scn.lora_linear_names()) if method in (Method.LORA, Method.QLORA) else frozenset()
    autocast = (
        scn.train.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED)
        and scn.parallel.engine is not Engine.DEEPSPEED
        and llm_trains
    )
    return LayerFlags(
        weights_train=llm_trains,
        lora=lora,
        saves_linear_inputs=method is Method.QLORA,
        autocast=autocast,
        act_bytes=activation_dtype_bytes(scn),
        lora_dropout=scn.train.lora.dropout > 0,
        lora_r=scn.train.lora.r,
        lora_cast_copy=bool(lora) and scn.parallel.engine is not Engine.DEEPSPEED,
    )


def _saves_input(lin_names: list[str], flags: LayerFlags) -> bool:
    """Whether linears reading one input keep it for backward."""
    return flags.weights_train or flags.saves_linear_inputs or any(n in flags.lora for n in lin_names)


def _norm(h: int, flags: LayerFlags, output_saved: bool) -> int:
    """Bytes per token kept by one HF RMSNorm and its output."""
    b = flags.act_bytes
    total = 4 * h  # fp32 copy of the input, saved by pow and mul
    if flags.weights_train:
        total += b * h  # normalised tensor saved by the weight multiply
    if output_saved:
        total += b * h
    return total


def _lora_extra(linears: list[Linear], flags: LayerFlags) -> int:
    """Bytes per token the LoRA adapters of one layer add (dropout output + mask, casts, rank-r outputs)."""
    total = 0
    for lin in linears:
        if lin.name not in flags.lora:
            continue
        d_in = lin.d_in
        per = flags.act_bytes * flags.lora_r
        if flags.lora_dropout:
            per += (flags.act_bytes + 1) * d_in
        if flags.lora_cast_copy:
            per += 4 * d_in
        total += per * (lin.count if not lin.expert else 1)
    return total


def attention_core_bytes(dec: DecoderSpec, scn: Scenario, seq_len: int, b: int) -> int:
    """Bytes per token saved by the attention kernel itself (what selective recompute drops)."""
    att = dec.attention
    a = att.num_heads
    impl = scn.train.attention
    core = b * (att.q_dim + att.kv_dim + att.v_dim)
    if impl is Attention.FLASH:
        return core + 4 * a
    expand = 0
    if att.mla is None and att.num_kv_heads < att.num_heads:
        expand = b * 2 * (att.q_dim - att.kv_dim)  # repeat_kv materialises K and V per query head
    if impl is Attention.SDPA:
        return core + expand + 4 * a
    return core + expand + 6 * a * seq_len  # eager: fp32 softmax saved + its 16-bit cast


def decoder_layer_bytes_per_token(scn: Scenario, index: int, flags: LayerFlags) -> int:
    """Bytes per token one decoder layer saves for backward without checkpointing (tp = 1)."""
    dec = scn.model.decoder
    att = dec.attention
    h, b = dec.hidden_size, flags.act_bytes
    linears = dec.attention.linears(h)
    qkv_names = [lin.name for lin in linears if lin.name != "o_proj"]
    total = _norm(h, flags, _saves_input(qkv_names, flags))
    total += attention_core_bytes(dec, scn, scn.train.seq_len, b)
    if scn.train.attention is Attention.EAGER and _saves_input(["o_proj"], flags):
        total += b * att.q_dim  # contiguous copy of the attention output kept by o_proj
    if att.mla is not None:
        total += 4 * (att.mla.kv_lora_rank + (att.mla.q_lora_rank or 0))  # latent norms keep fp32 copies
    elif att.qk_norm_numel:
        total += 4 * (att.q_dim + att.kv_dim)  # q/k norms keep fp32 copies
    mlp = dec.mlp_linears(index)
    if dec.is_moe_layer(index) and dec.moe is not None:
        moe = dec.moe
        experts = [lin for lin in mlp if lin.expert]
        expert_names = [lin.name for lin in experts]
        total += _norm(h, flags, _saves_input(["gate"] + expert_names, flags))
        total += b * moe.num_experts + 4 * moe.num_experts  # router logits and fp32 softmax
        per_routed = b * h  # expert output, saved by the routing-weight multiply
        if _saves_input(expert_names, flags):
            per_routed += b * h  # gathered expert input
        down_saves = _saves_input([moe.expert_names[2]], flags)
        per_routed += b * moe.expert_intermediate * (4 if down_saves else 3)
        total += moe.top_k * per_routed
        if moe.num_shared_experts and moe.shared_intermediate:
            total += b * moe.shared_intermediate * (4 if down_saves else 3)
    else:
        up_names = [lin.name for lin in mlp if lin.name != "down_proj"]
        total += _norm(h, flags, _saves_input(up_names, flags))
        down_saves = _saves_input(["down_proj"], flags)
        i = dec.intermediate_size
        if dec.gated_mlp:
            total += b * i * (4 if down_saves else 3)
        else:
            total += b * i * (2 if down_saves else 1)
    total += _lora_extra(linears + mlp, flags)
    if flags.autocast:
        # fp32 residual stream: normalised tensors kept in fp32 (+2h each) and a separate bf16 cast of
        # the input per linear (q, k, v and gate, up read the same norm output): +6h.
        total += 10 * h
    return total


def autocast_weight_copy_bytes(dec: DecoderSpec, index: int, flags: LayerFlags, tp: int) -> int:
    """bf16 copies of one layer's fp32 weights that autocast casts and the linears save for backward."""
    if not flags.autocast:
        return 0
    return 2 * sum(lin.numel for lin in dec.layer_linears(index)) // tp


@dataclass(frozen=True, slots=True)
class LLMActivations:
    """Decoder activation bytes on one rank for the in-flight micro-batches."""

    saved: int
    """Kept from the end of forward into backward (all layers, final norm)."""
    recompute: int
    """One layer recomputed during backward (checkpointing), 0 without checkpointing."""
    backward_temp: int
    """Activation gradients in flight while a layer runs backward."""
    logits_forward: int
    """Logits/loss bytes at the end of forward (transient peak)."""
    logits_backward: int
    """Logits/loss bytes at the start of backward."""
    moe_transient: int
    """MoE routing temporaries (permuted token copies, router probabilities)."""


def llm_activations(scn: Scenario, rp: RankParams) -> LLMActivations:
    """Decoder + logits activation bytes on the most loaded rank (see module docstring)."""
    dec = scn.model.decoder
    par = scn.parallel
    tp = par.tp
    flags = layer_flags(scn)
    b = flags.act_bytes
    h = dec.hidden_size
    tokens = scn.train.tokens_per_micro_batch
    in_flight = min(par.pp, scn.train.grad_accum) if par.pp > 1 else 1
    first_layer = 0
    layers = range(first_layer, first_layer + rp.layers)
    by_kind: dict[bool, int] = {}
    for i in layers:
        kind = dec.is_moe_layer(i)
        if kind not in by_kind:
            by_kind[kind] = decoder_layer_bytes_per_token(scn, i, flags)
    per_layer = [by_kind[dec.is_moe_layer(i)] for i in layers]
    # Tensor parallelism splits everything but the norms and the residual stream (Korthikanti §4.1).
    norm_part = 8 * h if tp > 1 else 0
    per_layer_tp = [norm_part + (x - norm_part) // tp for x in per_layer]
    weight_copies = [autocast_weight_copy_bytes(dec, i, flags, tp) for i in layers] if flags.autocast else [0]
    ckpt = scn.train.grad_ckpt
    input_bytes = (4 if flags.autocast else b) * h
    if ckpt is GradCkpt.FULL:
        saved_layers = rp.layers * input_bytes * tokens
        recompute = max(per_layer_tp) * tokens + max(weight_copies or [0])
    elif ckpt is GradCkpt.SELECTIVE:
        core = attention_core_bytes(dec, scn, scn.train.seq_len, b) // tp
        saved_layers = sum(x - core for x in per_layer_tp) * tokens + sum(weight_copies)
        recompute = core * tokens
    else:
        saved_layers = sum(per_layer_tp) * tokens + sum(weight_copies)
        recompute = 0
    saved = saved_layers * in_flight
    if rp.has_lm_head:
        saved += _norm(h, flags, True) * tokens  # final norm
    i_eff = dec.intermediate_size
    if dec.moe is not None:
        i_eff = max(i_eff, dec.moe.top_k * dec.moe.expert_intermediate)
    backward_temp = tokens * b * (2 * h + 3 * i_eff) // tp
    if scn.train.attention is Attention.EAGER:
        backward_temp += tokens * dec.attention.num_heads * scn.train.seq_len * 4 // tp  # softmax grad
        saved += b * scn.train.micro_batch * scn.train.seq_len**2  # additive causal mask
    logits_fwd = logits_bwd = 0
    if rp.has_lm_head:
        logits_fwd, logits_bwd = logits_bytes(scn, tokens)
    moe_transient = 0
    if dec.moe is not None:
        moe_transient = dec.moe.top_k * tokens * 2 * b * h // tp + tokens * dec.moe.num_experts * 12
    return LLMActivations(
        saved=saved,
        recompute=recompute,
        backward_temp=backward_temp,
        logits_forward=logits_fwd,
        logits_backward=logits_bwd,
        moe_transient=moe_transient,
    )


def logits_bytes(scn: Scenario, tokens: int) -> tuple[int, int]:
    """(forward peak, backward peak) of logits + cross-entropy for ``tokens`` tokens (module docstring)."""
    dec = scn.model.decoder
    v = ceil_div(dec.vocab_size, scn.parallel.tp)
    b = activation_dtype_bytes(scn)
    upcast = 0 if b == 4 else 4
    if scn.train.loss is Loss.CHUNKED:
        # Fused linear + CE (Liger FLCE): logits exist one chunk at a time; chunk = next power of two of
        # ceil(T / ceil(V / h)) tokens; grad of the hidden states is computed in forward.
        chunk = 1
        target = ceil_div(tokens, ceil_div(v, dec.hidden_size))
        while chunk < target:
            chunk *= 2
        chunk = min(chunk, tokens)
        per_chunk = chunk * v * (b + upcast + 4)
        grad_hidden = tokens * dec.hidden_size * b
        grad_weight = v * dec.hidden_size * b if scn.trains(Part.LLM) else 0
        return per_chunk + grad_hidden + grad_weight, grad_hidden + grad_weight
    fwd = tokens * v * (b + upcast + 4)
    bwd = tokens * v * 12
    if dec.logit_softcap:
        fwd += tokens * v * 8  # tanh output saved + scaled copy, fp32
        bwd += tokens * v * 4
    return fwd, bwd


@dataclass(frozen=True, slots=True)
class VisionActivations:
    """Vision-side activation bytes per micro-batch."""

    saved_tower: int
    """Tower outputs kept as connector inputs, plus trainable tower activations."""
    saved_connector: int
    """Saved tensors of trainable connectors (projector, MGM patch-info mining)."""
    tower_transient: int
    """Peak transient while the towers run (before the LLM forward)."""


def _tower_output_bytes(t: VisionTowerSpec, b: int) -> int:
    """Bytes of one image's tower output."""
    channels = t.out_channels or t.hidden_size
    return t.output_positions_per_image * channels * b


def _tower_transient_bytes(t: VisionTowerSpec, scn: Scenario, b: int) -> int:
    """Largest transient of one image's no-grad tower forward."""
    if t.kind == "convnext":
        # MGM openclip_encoder: every stage upsampled to the stride-4 grid in fp32 and concatenated,
        # then cast back: 4 + 2 bytes per output element (mgm.md §1.2).
        return t.output_positions_per_image * (t.out_channels or sum(t.stage_dims)) * (4 + b)
    p = t.patches_per_pass
    layer = p * (6 * t.hidden_size + 2 * t.intermediate_size) * b
    if scn.train.attention is Attention.EAGER or t.kind == "vit":
        layer += t.num_heads * p * p * (b + 4)  # CLIP/SigLIP towers in these repos run eager attention
    return t.passes_per_image * layer


def _trainable_tower_bytes(t: VisionTowerSpec, scn: Scenario, b: int) -> int:
    """Saved activations of one image through a trained tower (Korthikanti block without dropout)."""
    ckpt = scn.train.grad_ckpt is GradCkpt.FULL
    if t.kind == "convnext":
        side = t.image_size // 4
        total = 0
        for s, (d, depth) in enumerate(zip(t.stage_dims, t.stage_depths)):
            positions = (side >> s) ** 2
            total += positions * depth * (b * d if ckpt else 12 * b * d)
        return total * t.passes_per_image
    p = t.patches_per_pass
    per_patch = b * t.hidden_size if ckpt else 8 * b * t.hidden_size + 2 * b * t.intermediate_size + 4 * t.num_heads
    if not ckpt:
        per_patch += 6 * t.num_heads * p  # eager attention probabilities
    return t.num_layers * p * per_patch * t.passes_per_image


def _connector_bytes(c: ConnectorSpec, scn: Scenario, b: int) -> int:
    """Saved bytes of one trainable connector per image."""
    model = scn.model
    if c.kind == "mgm_mining":
        aux = model.tower("vision_aux")
        positions = aux.output_positions_per_image if aux else 0
        aux_ch = aux.out_channels if aux else 0
        width = max((lin.d_out for lin in c.linears), default=0)
        # reshaped 2880-channel copy, two LayerNorm outputs (aux and value heads), two linear outputs.
        per_position = b * (3 * aux_ch + 2 * width)
        query_tokens = model.image_tokens
        return positions * per_position + query_tokens * b * 4 * width
    tokens = model.image_tokens
    if c.kind == "merger":
        vis = model.tower("vision")
        tokens = vis.output_positions_per_image // 4 if vis else tokens
    per_token = sum(b * lin.d_in for lin in c.linears) + sum(b * lin.d_out for lin in c.linears[:-1])
    return tokens * per_token


def vision_activations(scn: Scenario, rp: RankParams) -> VisionActivations:
    """Vision-side activation bytes on the rank that holds the towers."""
    model = scn.model
    images = scn.train.micro_batch * scn.train.images_per_sample
    if not rp.holds_vision or images == 0:
        return VisionActivations(0, 0, 0)
    b = activation_dtype_bytes(scn)
    saved_tower = transient = saved_conn = 0
    connectors_train = scn.trains(Part.PROJECTOR)
    for t in model.towers:
        part = Part(t.name)
        if scn.trains(part):
            saved_tower += _trainable_tower_bytes(t, scn, b) + _tower_output_bytes(t, b)
        elif connectors_train:
            saved_tower += _tower_output_bytes(t, b)
        transient = max(transient, _tower_transient_bytes(t, scn, b))
    if connectors_train:
        for c in model.connectors:
            saved_conn += _connector_bytes(c, scn, b)
    return VisionActivations(saved_tower * images, saved_conn * images, transient * images)
