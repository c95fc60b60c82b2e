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
- MLA (DeepSeek-V2/V3): q and the per-head keys at the q/k head dim, the value padded to that dim and the
  padded output (transformers' FA2 path pads and crops; integrations/flash_attention.py), o_proj's
  contiguous crop, and the latent RMSNorms like hidden ones (traced: constant_pad_nd and flash output
  (1,16,512,192), clone (1,512,16,128)). q/k norms (Qwen3, OLMoE): fp32 copies, per-head rsqrt and the
  normalised tensors.
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
  gradient (12 V) at the start of backward. traced exactly. Final logit soft-capping (Gemma-2) keeps the
  16-bit tanh output (b V) in both; attention soft-capping on the eager path the 16-bit tanh of the scores
  (b a s). Post-norms (Gemma-2/3 and GLM-4 sandwich, OLMo-2/3 and EXAONE-4 post-norm layers) keep what an
  input RMSNorm keeps minus its output; post-norm layers' projections save the residual stream itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Part
from ..scenario import Attention, GradCkpt, Loss, Scenario
from ..units import ceil_div
from .layer import (
    LayerFlags,
    _first_layer_savings,
    _llm_input_needs_grad,
    _norm,
    _savers,
    attention_core_bytes,
    autocast_weight_copy_bytes,
    decoder_layer_bytes_per_token,
    forward_layer_bytes_per_token,
    fp32_routing,
    layer_backward_bytes_per_token,
    layer_flags,
)
from .params import RankParams
from .vision import VisionActivations, activation_dtype_bytes, vision_activations

__all__ = [
    "LLMActivations", "LayerFlags", "VisionActivations", "activation_dtype_bytes", "decoder_layer_bytes_per_token",
    "layer_backward_bytes_per_token", "layer_flags", "llm_activations", "logits_bytes", "vision_activations",
]

@dataclass(frozen=True, slots=True)
class LLMActivations:
    """Decoder activation bytes on one rank for the in-flight micro-batches."""

    saved: int
    """Kept from the end of forward into backward (all layers, final norm)."""
    recompute: int
    """One layer recomputed during backward (checkpointing), 0 without checkpointing."""
    backward_temp: int
    """Activation-gradient temporaries while one layer's MLP runs backward."""
    backward_freed: int
    """That layer's saved (or recomputed) tensors already freed at that moment (the product; under autocast
    down_proj's weight copy)."""
    norm_backward: int
    """Temporaries of an RMSNorm backward (the final norm's runs with every saved tensor alive)."""
    final_norm: int
    """Saved tensors of the final norm (freed once its backward ran, before the layers')."""
    layer_kept: int
    """What one layer still holds when the last (bottom) layer runs backward: its input (checkpointing)
    or its saved tensors."""
    logits_forward: int
    """Logits/loss bytes at the end of forward (transient peak)."""
    logits_backward: int
    """Logits/loss bytes at the start of backward."""
    moe_transient: int
    """MoE routing temporaries of one layer's forward (fp32 routing-weight products)."""
    bottom_layer: tuple[int, int, int, int] = (-1, 0, 0, 0)
    """(recompute, backward temporaries, freed, kept) of the bottom layer when its kind differs; -1: same."""
    recomputes_layers: bool = False
    """Full checkpointing: the MLP's freed tensors come out of the recomputed layer, not the saved ones."""
    forward_layer: int = 0
    """Peak inside the last layer's forward on top of what earlier layers keep: its MLP intermediates
    (checkpointing), or MoE's fp32/16-bit routing products (without)."""
    forward_extra: int = 0
    """Alive at the end of forward only: the model output (final norm) held by the loss call when lm_head does
    not save it, and, with checkpointing under autocast, every layer's cached 16-bit weight copy (autocast's
    cache lives until the autocast region ends, before backward; traced)."""

    @property
    def top_of_backward(self) -> tuple[int, int, int]:
        """(saved activations, recompute, temporaries) at the peak of the first layers' backward: the final
        norm's fp32 chain with every saved tensor alive, or the top layer (recomputed) with its MLP
        gradients once the final norm's tensors are freed."""
        if self.recomputes_layers:
            layer = (self.saved - self.final_norm, max(0, self.recompute - self.backward_freed), self.backward_temp)
        else:
            layer = (max(0, self.saved - self.final_norm - self.backward_freed), self.recompute, self.backward_temp)
        norm = (self.saved, 0, self.norm_backward)
        return layer if sum(layer) >= sum(norm) else norm

    @property
    def bottom_of_backward(self) -> tuple[int, int, int]:
        """(kept activations, recompute, temporaries) while the bottom layer's MLP runs backward."""
        recompute, temp, freed, kept = self.bottom_layer
        if recompute < 0:
            recompute, temp, freed, kept = self.recompute, self.backward_temp, self.backward_freed, self.layer_kept
        if self.recomputes_layers:
            return kept, max(0, recompute - freed), temp
        return max(0, kept - freed), recompute, temp


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
    layers = range(rp.layers)
    by_kind: dict[bool, tuple[int, int, int, int]] = {}
    for i in layers:
        kind = dec.is_moe_layer(i)
        if kind not in by_kind:
            override = scn.activation_profile
            saved = decoder_layer_bytes_per_token(scn, i, flags)
            mlp_bwd, freed, norm_bwd = layer_backward_bytes_per_token(scn, i, flags)
            if override is not None:
                saved, net = override.layer_bytes(kind, saved, mlp_bwd - freed)
                mlp_bwd, freed = net, 0
            by_kind[kind] = (saved, mlp_bwd, norm_bwd, freed)
    per_layer = [by_kind[dec.is_moe_layer(i)][0] for i in layers]
    # Tensor parallelism splits everything but the norms and the residual stream (Korthikanti §4.1).
    norm_part = 8 * h if tp > 1 else 0
    per_layer_tp = [norm_part + (x - norm_part) // tp for x in per_layer]
    weight_copies = [autocast_weight_copy_bytes(dec, i, flags, tp) for i in layers] if flags.autocast else [0]
    ckpt = scn.train.grad_ckpt
    input_bytes = flags.stream_bytes * h
    if ckpt is GradCkpt.FULL:
        saved_layers = rp.layers * input_bytes * tokens
        # under autocast the input norm's fp32 "copy" is the checkpointed fp32 input itself
        shared = 4 * h if flags.autocast else 0
        recompute = (max(per_layer_tp) - shared) * tokens + max(weight_copies or [0])
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
    if ckpt is GradCkpt.FULL and scn.train.attention is not Attention.FLASH:
        # the 4-D mask is an input of every checkpointed layer, so the checkpoints keep it until their
        # backward: bool for SDPA, additive in the embedding dtype for eager (traced: bitwise_and
        # (2,1,512,512) bool; where (2,1,256,256) fp32 under autocast)
        mask = 1 if scn.train.attention is Attention.SDPA else flags.stream_bytes
        saved_layers += mask * scn.train.micro_batch * scn.train.seq_len ** 2
        layer_kept += mask * scn.train.micro_batch * scn.train.seq_len ** 2
    if not _llm_input_needs_grad(scn, flags) and ckpt is GradCkpt.NONE and rp.has_embedding:
        saved_layers -= _first_layer_savings(scn, flags) * tokens
    saved = saved_layers * in_flight
    forward_extra = sum(weight_copies) if ckpt is GradCkpt.FULL else 0
    final_norm = _norm(h, flags, ["lm_head"], dec.norm_kind) * tokens if rp.has_lm_head else 0
    saved += final_norm  # final norm, its output kept by a training lm_head
    if rp.has_lm_head and (flags.casts_per_reader or not _savers(["lm_head"], flags)):
        forward_extra += flags.stream_bytes * h * tokens  # last_hidden_state, alive while the loss runs
    worst = max(by_kind.values(), key=lambda v: v[1] - v[3]) if by_kind else (0, 0, 0, 0)
    backward_temp = worst[1] * tokens // tp
    backward_freed = worst[3] * tokens // tp
    if flags.autocast and not dec.moe_layers:
        # down_proj's 16-bit weight copy is freed once its backward ran, before the MLP's peak (traced)
        backward_freed += 2 * dec.intermediate_size * h // tp
    norm_backward = max(v[2] for v in by_kind.values()) * tokens if by_kind else 0
    # the bottom (first) layer may be of another kind than the worst one (DeepSeek's first dense layers)
    first = by_kind.get(dec.is_moe_layer(0), worst) if rp.has_embedding else worst
    scale = (first[0] * tokens) / max(1, worst[0] * tokens)
    bottom = (
        int(recompute * scale) if ckpt is GradCkpt.FULL else recompute,
        first[1] * tokens // tp,
        first[3] * tokens // tp + (backward_freed - worst[3] * tokens // tp),
        layer_kept if ckpt is GradCkpt.FULL else int(layer_kept * scale),
    )
    logits_fwd = logits_bwd = 0
    if rp.has_lm_head:
        logits_fwd, logits_bwd = logits_bytes(scn, tokens)
        if flags.casts_per_reader:
            # autocast's 16-bit copy of the fp32 lm_head weight (trained, or cast to fp32 for QLoRA)
            copy = 2 * ceil_div(dec.vocab_size, tp) * h
            logits_fwd += copy
            logits_bwd += copy
    moe_transient = 0
    if dec.moe is not None:
        rb = 4 if fp32_routing(scn) else b
        moe_transient = 2 * dec.moe.rows_per_token * tokens * rb * h // tp  # weighted expert outputs + their reorder
    if ckpt is GradCkpt.FULL:
        forward_layer = max(forward_layer_bytes_per_token(scn, i, flags) for i in {0, *dec.moe_layers[:1]}
                            if i < dec.num_layers) * tokens // tp
    else:
        forward_layer = moe_transient
    return LLMActivations(
        saved=saved,
        recompute=recompute,
        backward_temp=backward_temp,
        backward_freed=backward_freed,
        norm_backward=norm_backward,
        final_norm=final_norm,
        layer_kept=layer_kept,
        logits_forward=logits_fwd,
        logits_backward=logits_bwd,
        moe_transient=moe_transient,
        recomputes_layers=ckpt is GradCkpt.FULL,
        bottom_layer=bottom,
        forward_layer=forward_layer,
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
        # Gemma2ForCausalLM.forward: logits / cap, tanh, * cap on the 16-bit logits before the loss upcasts
        # them; tanh saves its output until backward (traced: one more (512, 8000) bf16 tensor, both peaks)
        fwd += tokens * v * b
        bwd += tokens * v * b
    return fwd, bwd
