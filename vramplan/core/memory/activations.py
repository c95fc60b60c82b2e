"""Decoder activation memory: what autograd saves for backward, per token, per layer, as transformers runs.

Every term is checked against the fake-tensor trace of transformers 5.24 on torch 2.13 (``vramplan.tracing``;
tests/torch/test_crossval.py). Per token, per decoder layer, ``b`` = activation bytes (2, or 4 in fp32):

- RMSNorm (HF ``LlamaRMSNorm``): ``x.to(fp32)`` saved by ``pow``/``mul`` (4h) and the fp32 ``rsqrt``
  (4 B); the normalised tensor saved by the weight multiply when the weight trains (b h); the output
  (``weight * x``) when a linear reading it saves its input (b h). traced: ``_to_copy`` fp32 (2,256,512),
  ``rsqrt`` (2,256,1), ``_to_copy``/``mul`` bf16 per norm.
- Attention: q, k (after RoPE) and v (b (q + 2 kv)), the output (b o) and the fp32 log-sum-exp (4 a) are
  saved by the flash / SDPA-flash kernel, whatever o_proj does. traced: ``_scaled_dot_product_flash_
  attention_for_cpu`` output (2,8,256,64) and lse (2,8,256) fp32. SDPA with a padding mask (padded
  batches) repeats K/V to all heads (saves the copies instead of k, v) and saves the mask converted to the
  activation dtype, per layer: + b s (traced: ``aten.where`` (2,1,256,256) bf16 per layer; CUDA's
  mem-efficient kernel saves its ``attn_bias`` the same way). Eager saves q, repeated K/V, the fp32
  softmax and its 16-bit cast (6 a s) and the contiguous output copy for o_proj; the additive mask lives
  through the forward only (traced: not live at the loss).
- Gated MLP: gate out, SiLU out, up out (3 b i) and the product (b i) when down_proj saves its input.
- MoE (``grouped_mm`` experts): router logits + fp32 softmax per expert, and per routed token (x k) the
  gathered input (b h), gate_up out, SiLU out, product (4 b i' ... 8 bytes/i' in bf16) and the expert output
  (b h) kept by the routing-weight multiply. Expert weights are plain parameters that autocast does not
  cast: with fp32 weights under autocast the routed tensors are fp32 (traced: ``grouped_mm_fallback``
  (2048,1408) fp32).
- LoRA (PEFT ``lora.Linear``): per adapter the dropout output and its bool mask ((b + 1) d_in; CUDA
  ``native_dropout``) and the rank-r output (b r). With dropout the frozen base linear and its input are
  not kept (traced: norm output not live); fp32 adapters on a 16-bit model (autocast) cast the input to
  fp32 (transient) and autocast casts it back: the saved copy is 16-bit, as without the cast.
- Autocast (fp32 weights, HF Trainer / DDP without DeepSpeed): the residual stream is fp32 (the embedding
  output is fp32), the normalised tensors are fp32, every linear saves its own 16-bit cast of its input,
  and each linear's 16-bit weight copy is saved (autocast's cache; traced ``_to_copy`` (1408,512) bf16),
  lm_head's included (2 V h, traced ``_to_copy`` (32000,512)). FSDP's MixedPrecisionPolicy gathers 16-bit
  weights instead: no copies, 16-bit stream.
- Checkpointing (HF ``GradientCheckpointingLayer``, non-reentrant): each layer's input is kept; one layer
  is recomputed in backward (traced: ``temporaries/recompute`` = the layer's saved tensors).
- Backward of one layer holds its saved (or recomputed) tensors plus activation-gradient temporaries:
  in the gated MLP the incoming gradient (b h) and the gradients of the product, SiLU and up outputs
  (3 b i) while the product itself is already freed: net b h + 2 b i; in an RMSNorm backward the fp32
  chain of its autograd formula, about b h + 20 h (traced: five fp32 (2,512,512) tensors live at once);
  in an MoE block the fp32 routing-weight gradients, about 6 h + 10 h k.
- Logits + cross-entropy (transformers ``ForCausalLMLoss``): 16-bit logits (b V), fp32 upcast (4 V) and
  log-softmax output (4 V) at the end of forward; saved log-softmax + its incoming gradient + its output
  gradient (12 V) at the start of backward. traced exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import DecoderSpec, Linear, Part
from ..scenario import Attention, Engine, GradCkpt, Loss, Method, Precision, Scenario
from ..units import ceil_div
from .params import RankParams
from .vision import VisionActivations, activation_dtype_bytes, vision_activations

__all__ = [
    "LLMActivations", "LayerFlags", "VisionActivations", "activation_dtype_bytes", "decoder_layer_bytes_per_token",
    "layer_backward_bytes_per_token", "layer_flags", "llm_activations", "logits_bytes", "vision_activations",
]

NORM_BACKWARD_FP32_PER_H = 20
"""fp32 bytes per hidden unit an RMSNorm backward holds at once (five fp32 copies; traced)."""


@dataclass(frozen=True, slots=True)
class LayerFlags:
    """What in one decoder layer needs its inputs saved, and in which dtype."""

    weights_train: bool
    lora: frozenset[str]
    saves_linear_inputs: bool
    """bitsandbytes 4-bit matmuls save their input whether or not the weight trains (QLoRA)."""
    autocast: bool
    """fp32 weights under 16-bit autocast (HF Trainer/DDP without DeepSpeed or FSDP's mixed precision)."""
    act_bytes: int
    lora_dropout: bool
    lora_r: int

    @property
    def stream_bytes(self) -> int:
        """Bytes per element of the residual stream (fp32 under autocast)."""
        return 4 if self.autocast else self.act_bytes


def layer_flags(scn: Scenario) -> LayerFlags:
    """Flags for the decoder layers of this scenario."""
    method = scn.train.method
    llm_trains = scn.trains(Part.LLM)
    lora = frozenset(scn.lora_linear_names()) if method in (Method.LORA, Method.QLORA) else frozenset()
    autocast = (
        scn.train.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED)
        and scn.parallel.engine in (Engine.SINGLE, Engine.DDP)
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
    )


def _savers(lin_names: list[str], flags: LayerFlags) -> int:
    """How many of the linears reading one input keep it (their own copy under autocast)."""
    if flags.weights_train or flags.saves_linear_inputs:
        return len(lin_names)
    if flags.lora_dropout:
        return 0  # adapters keep their dropout outputs; the frozen base keeps nothing
    return sum(1 for n in lin_names if n in flags.lora)


def _norm(h: int, flags: LayerFlags, readers: list[str]) -> int:
    """Bytes per token kept by one HF RMSNorm and, when its readers save it, its output (module docstring)."""
    total = 4 * h + 4  # fp32 input copy + fp32 rsqrt
    if flags.weights_train:
        total += flags.stream_bytes * h  # normalised tensor, saved by the weight multiply
    savers = _savers(readers, flags)
    if savers:
        total += 2 * savers * h if flags.autocast else flags.act_bytes * h
    return total


def _lora_extra(linears: list[Linear], flags: LayerFlags) -> int:
    """Bytes per token the LoRA adapters of one layer keep (dropout output + mask, rank-r output)."""
    total = 0
    b = flags.act_bytes
    for lin in linears:
        if lin.name not in flags.lora:
            continue
        per = b * flags.lora_r
        if flags.lora_dropout:
            per += (b + 1) * lin.d_in
        total += per * (lin.count if not lin.expert else 1)
    return total


def attention_core_bytes(dec: DecoderSpec, scn: Scenario, seq_len: int, b: int) -> int:
    """Bytes per token saved by the attention kernel (what selective recompute drops): q, k, v (repeated to
    all heads on the padded SDPA and eager paths), the fp32 log-sum-exp, the SDPA mask / eager softmax."""
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
        return core + expand + 4 * a + b * seq_len  # the padding mask, converted to the activation dtype
    return core + expand + 6 * a * seq_len  # eager: fp32 softmax saved + its 16-bit cast


def _attention_out_dim(dec: DecoderSpec) -> int:
    att = dec.attention
    return att.num_heads * (att.mla.v_head_dim if att.mla is not None else att.head_dim)


def decoder_layer_bytes_per_token(scn: Scenario, index: int, flags: LayerFlags) -> int:
    """Bytes per token one decoder layer saves for backward without checkpointing (tp = 1)."""
    dec = scn.model.decoder
    att = dec.attention
    h, b = dec.hidden_size, flags.act_bytes
    linears = dec.attention.linears(h)
    qkv_names = [lin.name for lin in linears if lin.name != "o_proj"]
    total = _norm(h, flags, qkv_names)
    total += attention_core_bytes(dec, scn, scn.train.seq_len, b)
    out = b * _attention_out_dim(dec)
    if scn.train.attention is not Attention.EAGER:
        total += out  # saved by the flash / SDPA kernel itself (o_proj reads a view of it)
    elif _savers(["o_proj"], flags):
        total += out  # contiguous copy of the attention output kept by o_proj
    if att.mla is not None:
        total += 4 * (att.mla.kv_lora_rank + (att.mla.q_lora_rank or 0))  # latent norms keep fp32 copies
    elif att.qk_norm_numel:
        total += 4 * (att.q_dim + att.kv_dim)  # q/k norms keep fp32 copies
    mlp = dec.mlp_linears(index)
    if dec.is_moe_layer(index) and dec.moe is not None:
        moe = dec.moe
        experts = [lin for lin in mlp if lin.expert]
        expert_names = [lin.name for lin in experts]
        total += _norm(h, flags, ["gate"] + expert_names[:1])
        total += b * moe.num_experts + 4 * moe.num_experts  # router logits and fp32 softmax
        be = 4 if flags.autocast else b  # grouped_mm experts are not autocast: fp32 with fp32 weights
        per_routed = be * h  # expert output, saved by the routing-weight multiply
        if _savers(expert_names[:1], flags):
            per_routed += be * h  # gathered expert input
        down_saves = _savers([moe.expert_names[2]], flags) > 0
        per_routed += be * moe.expert_intermediate * (4 if down_saves else 3)
        total += moe.top_k * per_routed
        if moe.num_shared_experts and moe.shared_intermediate:
            total += b * moe.shared_intermediate * (4 if down_saves else 3)
    else:
        up_names = [lin.name for lin in mlp if lin.name != "down_proj"]
        total += _norm(h, flags, up_names)
        down_saves = _savers(["down_proj"], flags) > 0
        i = dec.intermediate_size
        if dec.gated_mlp:
            total += b * i * (4 if down_saves else 3)
        else:
            total += b * i * (2 if down_saves else 1)
    total += _lora_extra(linears + mlp, flags)
    return total


def layer_backward_bytes_per_token(scn: Scenario, index: int, flags: LayerFlags) -> tuple[int, int]:
    """(MLP/MoE backward temporaries net of the freed product, RMSNorm backward temporaries), per token."""
    dec = scn.model.decoder
    h, b = dec.hidden_size, flags.act_bytes
    incoming = flags.stream_bytes * h
    norm = incoming + NORM_BACKWARD_FP32_PER_H * h
    if dec.is_moe_layer(index) and dec.moe is not None:
        moe = dec.moe
        mlp = 6 * h + 10 * h * moe.top_k
        mlp = max(mlp, incoming + 2 * b * moe.top_k * moe.expert_intermediate)
    elif dec.gated_mlp:
        mlp = incoming + 2 * b * dec.intermediate_size
    else:
        mlp = incoming + b * dec.intermediate_size
    return mlp, norm


def _llm_input_needs_grad(scn: Scenario, flags: LayerFlags) -> bool:
    """Whether the first layer's input requires grad: trained embeddings, a trained vision side feeding
    image features, or checkpointing (transformers calls ``enable_input_require_grads`` with it)."""
    if flags.weights_train or scn.train.grad_ckpt is not GradCkpt.NONE:
        return True
    vision_trains = any(scn.trains(p) for p in (Part.VISION, Part.VISION_AUX, Part.PROJECTOR))
    return scn.model.is_vlm and scn.train.images_per_sample > 0 and vision_trains


def _first_layer_savings(scn: Scenario, flags: LayerFlags) -> int:
    """Per token, what layer 0 does not save when its input needs no grad (frozen LLM, LoRA without
    checkpointing): its input norm's fp32 copy and rsqrt, and the dropout masks of the adapters reading it
    (traced: 4 fp32 norm copies and 9 masks for 2 layers, not 5 and 12)."""
    h = scn.model.decoder.hidden_size
    masks = 0
    if flags.lora_dropout:
        masks = sum(lin.d_in for lin in scn.model.decoder.attention.linears(h)
                    if lin.name in flags.lora and lin.name != "o_proj")
    return 4 * h + 4 + masks


def autocast_weight_copy_bytes(dec: DecoderSpec, index: int, flags: LayerFlags, tp: int) -> int:
    """16-bit copies of one layer's fp32 linear weights that autocast makes and the matmuls save
    (routed experts are plain parameters that autocast never casts)."""
    if not flags.autocast:
        return 0
    return 2 * sum(lin.numel for lin in dec.layer_linears(index) if not lin.expert) // tp


@dataclass(frozen=True, slots=True)
class LLMActivations:
    """Decoder activation bytes on one rank for the in-flight micro-batches."""

    saved: int
    """Kept from the end of forward into backward (all layers, final norm)."""
    recompute: int
    """One layer recomputed during backward (checkpointing), 0 without checkpointing."""
    backward_temp: int
    """Activation-gradient temporaries while one layer's MLP runs backward (net of its freed product)."""
    norm_backward: int
    """Temporaries of an RMSNorm backward (the final norm's runs with every saved tensor alive)."""
    layer_kept: int
    """What one layer still holds when the last (bottom) layer runs backward: its input (checkpointing)
    or its saved tensors."""
    logits_forward: int
    """Logits/loss bytes at the end of forward (transient peak)."""
    logits_backward: int
    """Logits/loss bytes at the start of backward."""
    moe_transient: int
    """MoE routing temporaries of one layer's forward (fp32 routing-weight products)."""
    forward_extra: int = 0
    """Alive at the end of forward only: the model output (final norm) held by the loss call when lm_head does
    not save it, and, with checkpointing under autocast, every layer's cached 16-bit weight copy (autocast's
    cache lives until the autocast region ends, before backward; traced)."""

    @property
    def top_of_backward(self) -> tuple[int, int]:
        """(recompute, temporaries) at the peak of the first layers' backward: the final norm's fp32 chain,
        or the top layer recomputed with its MLP gradients."""
        if self.recompute + self.backward_temp >= self.norm_backward:
            return self.recompute, self.backward_temp
        return 0, self.norm_backward


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
    layers = range(0, rp.layers)
    by_kind: dict[bool, tuple[int, int, int]] = {}
    for i in layers:
        kind = dec.is_moe_layer(i)
        if kind not in by_kind:
            override = scn.activation_profile
            saved = decoder_layer_bytes_per_token(scn, i, flags)
            mlp_bwd, norm_bwd = layer_backward_bytes_per_token(scn, i, flags)
            if override is not None:
                saved, mlp_bwd = override.layer_bytes(kind, saved, mlp_bwd)
            by_kind[kind] = (saved, mlp_bwd, norm_bwd)
    per_layer = [by_kind[dec.is_moe_layer(i)][0] for i in layers]
    # Tensor parallelism splits everything but the norms and the residual stream (Korthikanti §4.1).
    norm_part = 8 * h if tp > 1 else 0
    per_layer_tp = [norm_part + (x - norm_part) // tp for x in per_layer]
    weight_copies = [autocast_weight_copy_bytes(dec, i, flags, tp) for i in layers] if flags.autocast else [0]
    ckpt = scn.train.grad_ckpt
    input_bytes = flags.stream_bytes * h
    if ckpt is GradCkpt.FULL:
        saved_layers = rp.layers * input_bytes * tokens
        recompute = max(per_layer_tp) * tokens + max(weight_copies or [0])
        layer_kept = input_bytes * tokens
    elif ckpt is GradCkpt.SELECTIVE:
        core = attention_core_bytes(dec, scn, scn.train.seq_len, b) // tp
        saved_layers = sum(x - core for x in per_layer_tp) * tokens + sum(weight_copies)
        recompute = core * tokens
        layer_kept = (max(per_layer_tp) - core) * tokens + max(weight_copies or [0])
    else:
        saved_layers = sum(per_layer_tp) * tokens + sum(weight_copies)
        recompute = 0
        layer_kept = max(per_layer_tp) * tokens + max(weight_copies or [0])
    if not _llm_input_needs_grad(scn, flags) and ckpt is GradCkpt.NONE and rp.has_embedding:
        saved_layers -= _first_layer_savings(scn, flags) * tokens
    saved = saved_layers * in_flight
    forward_extra = sum(weight_copies) if ckpt is GradCkpt.FULL else 0
    if rp.has_lm_head:
        saved += _norm(h, flags, ["lm_head"]) * tokens  # final norm, its output kept by a training lm_head
        if flags.autocast or not _savers(["lm_head"], flags):
            forward_extra += flags.stream_bytes * h * tokens  # last_hidden_state, alive while the loss runs
    backward_temp = max(v[1] for v in by_kind.values()) * tokens // tp if by_kind else 0
    norm_backward = max(v[2] for v in by_kind.values()) * tokens if by_kind else 0
    if scn.train.attention is Attention.EAGER:
        backward_temp += tokens * dec.attention.num_heads * scn.train.seq_len * 4 // tp  # softmax grad
    logits_fwd = logits_bwd = 0
    if rp.has_lm_head:
        logits_fwd, logits_bwd = logits_bytes(scn, tokens)
        if flags.autocast:
            copy = 2 * ceil_div(dec.vocab_size, tp) * h  # autocast's 16-bit copy of the fp32 lm_head weight
            logits_fwd += copy
            logits_bwd += copy
    moe_transient = 0
    if dec.moe is not None:
        moe_transient = 2 * dec.moe.top_k * tokens * 4 * h // tp + tokens * dec.moe.num_experts * 12
    return LLMActivations(
        saved=saved,
        recompute=recompute,
        backward_temp=backward_temp,
        norm_backward=norm_backward,
        layer_kept=layer_kept,
        logits_forward=logits_fwd,
        logits_backward=logits_bwd,
        moe_transient=moe_transient,
        forward_extra=forward_extra,
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
