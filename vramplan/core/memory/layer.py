"""One decoder layer, per token: what it saves for backward, what its backward holds on top, and the flags
that decide it. Split from ``activations.py`` (which composes layers, checkpointing and logits); the
derivations and their traced evidence are in that module's docstring. Imports only ``vramplan.core``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import DecoderSpec, Linear, Part
from ..scenario import Attention, Engine, GradCkpt, Method, Precision, Scenario
from .vision import activation_dtype_bytes

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
    fp32_norm_weight: bool = False
    """Gemma's RMSNorm applies its weight in fp32 (``output * (1.0 + self.weight.float())``; traced: the
    normalised tensor saved is fp32)."""

    autocast_region: bool = False
    """16-bit autocast is on (HF Trainer/DDP mixed precision), whether or not the base weights train (LoRA
    too): ``layer_norm`` is on autocast's fp32 list, so ``nn.LayerNorm`` casts its input to fp32 and saves
    that copy (traced: ``_to_copy`` fp32 (1,256,256) per LayerNorm with LoRA under bf16-mixed)."""

    fp32_stream: bool = False
    """QLoRA with 16-bit mixed precision: ``prepare_model_for_kbit_training`` casts embeddings, norms and
    lm_head to fp32, so the residual stream is fp32, each 4-bit linear saves a 16-bit cast of its input and
    returns fp32 (bitsandbytes ``Linear4bit.forward``: ``out.to(inp_dtype)``)."""

    @property
    def stream_bytes(self) -> int:
        """Bytes per element of the residual stream (fp32 under autocast or QLoRA's fp32 casts)."""
        return 4 if self.autocast or self.fp32_stream else self.act_bytes

    @property
    def casts_per_reader(self) -> bool:
        """Each linear keeps its own 16-bit cast of an fp32 input."""
        return self.autocast or self.fp32_stream

    @property
    def mlp_bytes(self) -> int:
        """Bytes per element of the MLP's linear outputs (fp32 out of QLoRA's 4-bit linears)."""
        return 4 if self.fp32_stream else self.act_bytes


def layer_flags(scn: Scenario) -> LayerFlags:
    """Flags for the decoder layers of this scenario."""
    method = scn.train.method
    llm_trains = scn.trains(Part.LLM)
    lora = frozenset(scn.lora_linear_names()) if method in (Method.LORA, Method.QLORA) else frozenset()
    autocast_region = (
        scn.train.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED)
        and scn.parallel.engine in (Engine.SINGLE, Engine.DDP)
    )
    autocast = autocast_region and llm_trains
    return LayerFlags(
        weights_train=llm_trains,
        lora=lora,
        saves_linear_inputs=method is Method.QLORA,
        autocast=autocast,
        act_bytes=activation_dtype_bytes(scn),
        lora_dropout=scn.train.lora.dropout > 0,
        lora_r=scn.train.lora.r,
        fp32_norm_weight=scn.model.decoder.norm_weight_fp32 or scn.model.decoder_layer_class.startswith("Gemma"),
        autocast_region=autocast_region,
        fp32_stream=method is Method.QLORA and scn.train.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED),
    )


def _savers(lin_names: list[str], flags: LayerFlags) -> int:
    """How many of the linears reading one input keep it (their own copy under autocast)."""
    if flags.weights_train or flags.saves_linear_inputs:
        return len(lin_names)
    if flags.lora_dropout:
        return 0  # adapters keep their dropout outputs; the frozen base keeps nothing
    return sum(1 for n in lin_names if n in flags.lora)


def _norm(h: int, flags: LayerFlags, readers: list[str], layer_norm: bool | str = False) -> int:
    """Bytes per token kept by one HF RMSNorm and, when its readers save it, its output (module docstring).

    ``layer_norm`` True or ``layer``: ``nn.LayerNorm`` (StarCoder2 ``input_layernorm``), whose
    ``native_layer_norm`` saves its input itself (in the stream dtype; under autocast an fp32 copy) and the fp32
    mean and rstd per row, and needs no normalised copy for the weight gradient (``native_layer_norm_backward``
    recomputes it). ``none``: OLMo-1's ``OlmoLayerNorm`` (``F.layer_norm(x.to(float32), ...)`` without weight or
    bias): the fp32 copy it normalises, mean and rstd. ``layer_nobias``: ``CohereLayerNorm``, written out in
    fp32 ops: ``x - mean`` twice (saved by ``pow`` and by the multiply with rsqrt), rsqrt, and the normalised
    fp32 tensor the ``weight.to(float32)`` multiply saves."""
    kind = ("layer" if layer_norm else "rms") if isinstance(layer_norm, bool) else layer_norm
    if kind == "none":
        total = 4 * h + 8
        savers = _savers(readers, flags)
        if savers:
            total += 2 * savers * h if flags.casts_per_reader else flags.act_bytes * h
        return total
    if kind == "layer_nobias":
        total = 8 * h + 4 + (4 * h if flags.weights_train else 0)
        savers = _savers(readers, flags)
        if savers:
            total += 2 * savers * h if flags.casts_per_reader else flags.act_bytes * h
        return total
    if kind == "layer":
        total = (4 if flags.autocast_region else flags.stream_bytes) * h + 8
        savers = _savers(readers, flags)
        if savers:
            total += 2 * savers * h if flags.casts_per_reader else flags.act_bytes * h
        return total
    total = 4 * h + 4  # fp32 input copy + fp32 rsqrt
    if flags.weights_train:
        # normalised tensor, saved by the weight multiply; Gemma multiplies in fp32 ((1 + w.float()) * x)
        total += (4 if flags.fp32_norm_weight else flags.stream_bytes) * h
    savers = _savers(readers, flags)
    if savers:
        total += 2 * savers * h if flags.casts_per_reader else flags.act_bytes * h
    return total


def _mlp_norm(dec: DecoderSpec, h: int, flags: LayerFlags, readers: list[str], layer_norm: bool | str) -> int:
    """Bytes per token kept by the norm in front of the MLP. Parallel layers (``norm_layout`` parallel) feed
    attention and MLP from the same input: with one norm (Phi-1/2 ``PhiDecoderLayer``, Falcon-7B, Cohere) the
    attention's norm already counted the MLP's readers, nothing more; with two (GPT-NeoX
    ``use_parallel_residual``: ``mlp(post_attention_layernorm(x))``, Falcon-40B ``ln_mlp``) the second
    ``nn.LayerNorm`` saves the same input tensor as the first (unless it casts a 16-bit stream to fp32 under
    autocast): only its mean/rstd and output are new."""
    if dec.norm_layout != "parallel":
        return _norm(h, flags, readers, layer_norm)
    if dec.norms_per_layer == 1:
        return 0
    total = _norm(h, flags, readers, layer_norm)
    if dec.norm_kind == "layer" and not (flags.autocast_region and flags.stream_bytes != 4):
        total -= flags.stream_bytes * h
    return total


def _stream_read(h: int, flags: LayerFlags, readers: list[str]) -> int:
    """Bytes per token kept when linears read the residual stream itself, without a norm before them
    (post-norm layers: ``Olmo2DecoderLayer.forward`` feeds ``hidden_states`` straight to ``self_attn`` and
    ``mlp``): the stream tensor, or each reader's 16-bit cast of the fp32 stream."""
    savers = _savers(readers, flags)
    if not savers:
        return 0
    return 2 * savers * h if flags.casts_per_reader else flags.stream_bytes * h


def _branch_norm(h: int, flags: LayerFlags) -> int:
    """Bytes per token kept by an RMSNorm on a branch output (Gemma-2/3 ``post_attention_layernorm`` /
    ``post_feedforward_layernorm``, GLM-4 ``post_self_attn_layernorm`` / ``post_mlp_layernorm``, OLMo-2/3
    post-norms): its fp32 input copy, rsqrt and normalised tensor, as ``_norm``; its output only joins the
    residual sum, which saves nothing."""
    return _norm(h, flags, [])


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
    grouped = att.mla is None and att.num_kv_heads < att.num_heads
    if att.kv_expanded and grouped:
        core = 3 * b * att.q_dim  # Falcon-40B-style split: K and V already copied to every query head
        grouped = False
    if att.sdpa_math_grouped and grouped and impl is Attention.SDPA:
        # FalconAttention.forward -> F.scaled_dot_product_attention(q, k, v, attn_mask) with one k/v head: the math
        # kernel (aten._scaled_dot_product_attention_math) upcasts to fp32 and keeps the scaled q, K^T and V
        # expanded to every head and the fp32 softmax (traced: clone (2, 8, 512, 32) fp32 x 2, clone
        # (2, 8, 32, 512) fp32, _safe_softmax (2, 8, 512, 512) fp32 per layer)
        return 4 * 3 * att.q_dim + 4 * a * seq_len
    if impl is Attention.FLASH:
        return core + 4 * a
    expand = 0
    if grouped:
        expand = b * 2 * (att.q_dim - att.kv_dim)  # repeat_kv materialises K and V per query head
    if impl is Attention.SDPA:
        return core + expand + 4 * a + b * seq_len  # the padding mask, converted to the activation dtype
    if att.sinks:
        # GPT-OSS eager_attention_forward: scores and the sink logits are concatenated, shifted by their max
        # (int64 indices saved) and softmaxed in the activation dtype (dtype=combined_logits.dtype); the
        # softmax output over s + 1 columns is saved, the matmul with V reads a slice of it (traced:
        # _softmax (2, 8, 256, 257) bf16, max.dim (2, 8, 256, 1) int64). The softmax runs in the scores' dtype:
        # the mask's, i.e. the residual stream's -- fp32 under autocast with fp32 weights, where
        # ``attn_weights.to(value_states.dtype)`` then keeps a 16-bit copy for the matmul (traced: _softmax
        # (2, 8, 256, 257) fp32 + _to_copy (2, 8, 256, 256) bf16; bf16 with LoRA on a bf16 base)
        sb = layer_flags(scn).stream_bytes
        return core + expand + sb * a * (seq_len + 1) + (b * a * seq_len if sb != b else 0) + 8 * a
    if att.logit_softcap:
        # eager_attention_forward (models/gemma2/modeling_gemma2.py): scores / cap, tanh, * cap; tanh keeps
        # its 16-bit output (traced: +1 MiB per layer at 2 x 256 tokens, 4 heads)
        expand += b * a * seq_len
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
    qkv_names = [lin.name for lin in linears if lin.name != att.o_name]
    if att.mla is not None:  # only the first q projection and kv_a read the input norm
        qkv_names = [qkv_names[0], "kv_a_proj_with_mqa"]
    post_norms = dec.norm_layout in ("sandwich", "post")
    ln = dec.norm_kind
    mlp = dec.mlp_linears(index)
    moe_layer = dec.is_moe_layer(index) and dec.moe is not None
    if moe_layer:
        mlp_readers = ["gate"] + [lin.name for lin in mlp if lin.expert][:1]
    else:
        mlp_readers = [lin.name for lin in mlp if lin.name != dec.mlp_names[2]]
    one_norm = dec.norm_layout == "parallel" and dec.norms_per_layer == 1
    readers = qkv_names + mlp_readers if one_norm else qkv_names
    total = _stream_read(h, flags, qkv_names) if dec.norm_layout == "post" else _norm(h, flags, readers, ln)
    total += attention_core_bytes(dec, scn, scn.train.seq_len, b)
    out = b * _attention_out_dim(dec)
    copies_v = flags.fp32_stream or (scn.train.attention is not Attention.FLASH and att.num_kv_heads < att.num_heads)
    if att.value_views_qkv and not copies_v:
        # GPTNeoXAttention.forward: q, k, v = query_key_value(x).view(...).chunk(3); the kernel keeps v, a view,
        # so the q and k thirds stay allocated too (traced: addmm (1024, 768) bf16 per layer) -- unless v is
        # copied first: repeat_kv (SDPA / eager with fewer kv heads), autocast's 16-bit cast of QLoRA's fp32
        # output
        total += b * (att.q_dim + att.kv_dim)
    if att.rotary_cat and att.mla is None and scn.train.attention is not Attention.EAGER and _savers([att.o_name], flags):
        # cat-built q is head-major, so is the kernel output; attn_output.transpose(1, 2).reshape(...) copies
        # it for o_proj (traced: clone (2, 512, 8, 32) bf16 next to the kernel output)
        total += out
    if att.mla is not None and scn.train.attention is not Attention.EAGER:
        # transformers pads MLA's values to the q/k head dim for FlashAttention-2 and crops the output
        # (integrations/flash_attention.py): the kernel keeps the padded value and output, o_proj the
        # contiguous crop (traced: constant_pad_nd, flash out (1,16,512,192), clone (1,512,16,128) bf16)
        qk_head = att.mla.qk_nope_head_dim + att.mla.qk_rope_head_dim
        total += b * att.num_heads * (qk_head - att.mla.v_head_dim) + b * att.num_heads * qk_head
        if _savers([att.o_name], flags):
            total += out
    elif scn.train.attention is not Attention.EAGER:
        total += out  # saved by the flash / SDPA kernel itself (o_proj reads a view of it)
    elif _savers([att.o_name], flags):
        total += out  # contiguous copy of the attention output kept by o_proj
    if att.mla is not None:
        # latent RMSNorms (kv_a_layernorm, q_a_layernorm) like the hidden ones, read by kv_b / q_b
        for rank, reader in ((att.mla.kv_lora_rank, "kv_b_proj"), (att.mla.q_lora_rank or 0, "q_b_proj")):
            if rank:
                total += _norm(rank, flags, [reader])
    elif att.qk_l2_norm:
        # Llama4TextL2Norm: x.float() kept by pow and the rsqrt multiply, one fp32 rsqrt per head row; no weight
        total += 4 * (att.q_dim + att.kv_dim) + 4 * (att.num_heads + att.num_kv_heads)
    elif att.qk_norm_numel and att.qk_norm_per_head_layer:
        # StableLmLayerNormPerHead: each nn.LayerNorm saves its input slice (keeping the q/k projection outputs;
        # under autocast an fp32 copy) and fp32 mean/rstd per head; the concatenated outputs are not saved
        total += (4 if flags.autocast_region else b) * (att.q_dim + att.kv_dim) + 8 * (att.num_heads + att.num_kv_heads)
    elif att.qk_norm_numel:
        # q/k norms: fp32 copy, fp32 rsqrt per head (one per token for OLMo-2's / OLMoE's norms over all
        # heads), the normalised tensor when their weight trains (fp32 for Gemma-3 / OLMo-2 weights)
        per_head = att.qk_norm_numel == 2 * att.head_dim
        rows = att.num_heads + att.num_kv_heads if per_head else 2
        total += 4 * (att.q_dim + att.kv_dim) + 4 * rows
        if flags.weights_train:
            total += (4 if flags.fp32_norm_weight else flags.act_bytes) * (att.q_dim + att.kv_dim)
    if post_norms:
        total += _branch_norm(h, flags)
    if dec.residual_dropout:
        total += 2 * h  # bool masks of the dropouts on the attention and MLP outputs (native_dropout)
    if moe_layer and dec.moe is not None:
        moe = dec.moe
        experts = [lin for lin in mlp if lin.expert]
        expert_names = [lin.name for lin in experts]
        total += _mlp_norm(dec, h, flags, mlp_readers, ln)
        total += b * moe.num_experts + 4 * moe.num_experts  # router logits and fp32 softmax
        if scn.model.moe_block_class.startswith("Deepseek"):
            total += 4 * h  # DeepSeek's fp32 router reads an fp32 copy of its input (traced: (512,2048) fp32)
        # grouped_mm experts are not autocast: fp32 with fp32 weights; Llama-4's torch.bmm is (16-bit)
        be = 4 if flags.autocast and not moe.dense_dispatch else b
        per_routed = be * h  # expert output, saved by the routing-weight multiply
        if moe.dense_dispatch:
            # Llama4TextMoe: hidden_states.repeat(E, 1) (stream dtype) is what the score multiply keeps; the
            # expert outputs are only summed (traced under autocast: repeat (4096, 256) fp32 + the bmm's bf16 cast)
            per_routed = flags.stream_bytes * h
        if _savers(expert_names[:1], flags):
            per_routed += be * h  # gathered expert input
        down_saves = _savers([moe.expert_names[2]], flags) > 0
        per_routed += be * moe.expert_intermediate * (4 if down_saves else 3)
        if moe.clamped_swiglu:
            # GptOssExperts._apply_gate: clamped gate, sigmoid, glu and up + 1 where SwiGLU keeps one SiLU output
            # (traced: clamp, sigmoid, add, 2 x mul (2048, 128) bf16 per layer next to gate_up (2048, 256))
            per_routed += 3 * be * moe.expert_intermediate
        total += moe.rows_per_token * per_routed
        if moe.num_shared_experts and moe.shared_intermediate:
            total += b * moe.shared_intermediate * (4 if down_saves else 3)
            if moe.shared_expert_gate:
                total += b * h  # shared expert output, saved by its sigmoid-gate multiply (traced: mm (1024,256))
    else:
        down_name = dec.mlp_names[2]
        up_names = [lin.name for lin in mlp if lin.name != down_name]
        total += _stream_read(h, flags, up_names) if dec.norm_layout == "post" else _mlp_norm(dec, h, flags, up_names, ln)
        down_saves = _savers([down_name], flags) > 0
        i = dec.intermediate_size
        bm = flags.mlp_bytes
        if dec.gated_mlp:
            total += bm * i * 3 + (2 if flags.fp32_stream else b) * i * down_saves  # QLoRA: down saves its cast
        else:
            n16, n32 = dec.act_saved_autocast if flags.autocast_region else (dec.act_saved, 0)
            total += i * (bm * n16 + 4 * n32) + (2 if flags.fp32_stream else b) * i * down_saves
    if post_norms:
        total += _branch_norm(h, flags)
    total += _lora_extra(linears + mlp, flags)
    return total


def layer_backward_bytes_per_token(scn: Scenario, index: int, flags: LayerFlags) -> tuple[int, int, int]:
    """(MLP/MoE backward temporaries, saved bytes already freed at that moment, RMSNorm backward
    temporaries), per token, for layer ``index`` (module docstring)."""
    dec = scn.model.decoder
    h, b = dec.hidden_size, flags.act_bytes
    # the incoming residual gradient; under autocast also its 16-bit cast for the down_proj backward and
    # the fp32 sum of the two branches' gradients (traced: 8 h live before the MLP gradients)
    incoming = 8 * h if flags.autocast else b * h
    norm = flags.stream_bytes * h + NORM_BACKWARD_FP32_PER_H * h
    if dec.is_moe_layer(index) and dec.moe is not None:
        moe = dec.moe
        be = 4 if flags.autocast and not moe.dense_dispatch else b  # fp32 grouped_mm experts under autocast
        rb = 4 if fp32_routing(scn) else b
        # routing-weight gradients per routed token: new_zeros + index_put in the weights' dtype, the
        # product's gradient (traced: (2048,256) fp32 for Mixtral, (4096,256) bf16 for Qwen2-MoE) -- or,
        # later, the experts' SiLU/up/product gradients once the product is freed
        routing = 6 * h + (2 * rb + b) * h * moe.rows_per_token
        # by then the routed outputs and the products are freed (their backward ran)
        freed = be * moe.rows_per_token * (moe.expert_intermediate + h)
        experts = 8 * h + 3 * be * moe.rows_per_token * moe.expert_intermediate
        if routing >= experts - freed:
            return routing, 0, norm
        return experts, freed, norm
    i = dec.intermediate_size
    # the product is freed by down_proj's backward before its gradient's consumers run
    if dec.gated_mlp:
        return incoming + 3 * b * i, b * i, norm
    if dec.act_saved == 4 and flags.autocast_region:
        # gelu_new under autocast (NewGELUActivation: 0.5 * x * (1 + tanh(...)), pow on autocast's fp32 list): the
        # 16-bit gradient of fc2's input, its fp32 copy for the fp32 product, and the fp32 gradients of both
        # product operands (traced: _to_copy bf16 + _to_copy fp32 + 2 x mul fp32 (2, 256, 1024) live at once)
        return incoming + (b + 4 + 2 * 4) * i, b * i, norm
    if dec.act_saved > 1:
        # decomposed activation without autocast: fc2's input gradient and both product operands' gradients
        return incoming + 3 * b * i, b * i, norm
    return incoming + 2 * b * i, b * i, norm


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
    dec = scn.model.decoder
    h = dec.hidden_size
    masks = 0
    if flags.lora_dropout:
        masks = sum(lin.d_in for lin in dec.attention.linears(h) if lin.name in flags.lora and lin.name != dec.attention.o_name)
    return (0 if dec.norm_layout == "post" else 4 * h + 4) + masks  # post-norm: no input norm


def fp32_routing(scn: Scenario) -> bool:
    """Whether the MoE routing weights stay fp32 (Mixtral's and DeepSeek's routers in transformers 5.24);
    Qwen-MoE and OLMoE cast them to the activation dtype."""
    block = scn.model.moe_block_class
    if block.startswith("GptOss"):
        # GptOssExperts: ``out * routing_weights[...]`` -- fp32 whenever the experts' output is, i.e. fp32 expert
        # weights under autocast (grouped_mm is not autocast); 16-bit otherwise
        return layer_flags(scn).autocast
    return block.startswith(("Mixtral", "Deepseek"))


def forward_layer_bytes_per_token(scn: Scenario, index: int, flags: LayerFlags) -> int:
    """Live bytes per token inside one checkpointed layer's MLP forward (nothing is saved there, so only the
    tensors still referenced: SiLU out, up out and the product; MoE: gathered input, gate_up out, SiLU out
    and product per routed token). traced: (2048,1408) + 2 x (2048,704) + (2048,256) in Mixtral's block."""
    dec = scn.model.decoder
    h, b = dec.hidden_size, flags.act_bytes
    live = 2 * flags.stream_bytes * h  # the MLP's input (norm output) and the residual it is added to
    if dec.is_moe_layer(index) and dec.moe is not None:
        moe = dec.moe
        be = 4 if flags.autocast and not moe.dense_dispatch else b
        return live + moe.rows_per_token * be * (8 * moe.expert_intermediate // 2 + h)
    return live + (3 * b * dec.intermediate_size if dec.gated_mlp else 2 * b * dec.intermediate_size)


def autocast_weight_copy_bytes(dec: DecoderSpec, index: int, flags: LayerFlags, tp: int) -> int:
    """16-bit copies of one layer's fp32 linear weights that autocast makes and the matmuls save
    (routed experts are plain parameters that autocast never casts)."""
    if not flags.autocast:
        return 0
    bmm = dec.moe is not None and dec.moe.dense_dispatch  # Llama4TextExperts: torch.bmm casts (and caches) them
    return 2 * sum(lin.numel for lin in dec.layer_linears(index) if bmm or not lin.expert) // tp
