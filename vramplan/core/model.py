"""Model specification: the shapes that set memory, and exact parameter counts.

A ``ModelSpec`` is a decoder LLM (dense, MoE, MLA) plus, for vision-language models, vision towers
and trainable connectors. It is built by ``vramplan.adapters.hf_config`` from a Hugging Face
``config.json``; nothing here parses files. Parameter counts follow the module structure of the
transformers implementations (one ``Linear`` per projection, biases where the config enables them),
so they can be checked against the real model built on the meta device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache

from .errors import SpecError


class Part(str, Enum):
    """The parts of a model that can train or stay frozen (scenario ``train.trainable``)."""

    LLM = "llm"
    VISION = "vision"
    VISION_AUX = "vision_aux"
    PROJECTOR = "projector"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Linear:
    """One ``nn.Linear`` (or a stack of ``count`` identical ones, e.g. experts)."""

    name: str
    """Module name as PEFT matches it (``q_proj``, ``w1``, ``fc1`` ...)."""
    d_in: int
    d_out: int
    bias: bool = False
    count: int = 1
    """Identical copies in one layer (routed experts)."""
    expert: bool = False
    """Belongs to a routed expert (sharded by expert parallelism, gathered as one MoE block)."""

    @property
    def weight_numel(self) -> int:
        """Elements of one copy's weight."""
        return self.d_in * self.d_out

    @property
    def numel(self) -> int:
        """Elements of all copies, bias included."""
        return self.count * (self.d_in * self.d_out + (self.d_out if self.bias else 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class MLASpec:
    """DeepSeek-V2/V3 multi-head latent attention (arXiv 2405.04434 §2.1)."""

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionSpec:
    """Self-attention shapes of one decoder layer."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm_numel: int = 0
    """Weights of per-layer q/k norms (Qwen3: 2*head_dim; OLMoE: hidden + kv_dim)."""
    fused_qkv: bool = False
    """One ``qkv_proj`` (Phi-3) instead of q/k/v."""
    mla: MLASpec | None = None
    sliding_window: int | None = None
    logit_softcap: bool = False
    """Attention-score soft-capping (Gemma-2 ``attn_logit_softcapping``): ``tanh`` on the scores, which the
    eager path keeps for backward."""
    qk_l2_norm: bool = False
    """Weightless L2 norms on q and k after RoPE (Llama-4 ``Llama4TextL2Norm``, ``use_qk_norm``)."""
    sinks: bool = False
    """One learned attention-sink logit per head (GPT-OSS ``GptOssAttention.sinks``, ``num_heads`` parameters)."""
    qkv_name: str = "qkv_proj"
    """Module name of the fused q/k/v projection (GPT-NeoX, Falcon: ``query_key_value``)."""
    o_name: str = "o_proj"
    """Module name of the output projection (GPT-NeoX, Phi-1/2, Falcon: ``dense``)."""
    rotary_cat: bool = False
    """q and k are rebuilt by ``torch.cat`` (partial rotary: GPT-NeoX, Phi-1/2, StableLM, GLM; GPT-OSS's
    ``_apply_rotary_emb``), contiguous head-major: the attention output comes back head-major too and
    o_proj reads a contiguous copy of it."""
    qk_norm_per_head_layer: bool = False
    """The q/k norms are one ``nn.LayerNorm(head_dim)`` per head (StableLM ``StableLmLayerNormPerHead``), applied
    to slices of the projection outputs and concatenated."""
    kv_expanded: bool = False
    """K and V are materialised at every query head before the kernel (Falcon's new decoder architecture:
    ``FalconAttention._split_heads`` indexes them out of the fused output, ``broadcast_to`` and ``flatten``)."""
    sdpa_math_grouped: bool = False
    """Calls ``F.scaled_dot_product_attention`` itself with fewer k/v heads than query heads and no
    ``enable_gqa`` (Falcon's multi-query ``FalconAttention``): PyTorch's fused kernels refuse it and the math
    kernel runs, upcast to fp32."""
    value_views_qkv: bool = False
    """The value is a view of the fused q/k/v output (GPT-NeoX ``query_key_value(...).chunk(3)``): while the
    attention kernel keeps v, the whole fused output stays allocated."""

    @property
    def q_dim(self) -> int:
        """Width of the query projection (all heads)."""
        if self.mla is not None:
            return self.num_heads * (self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim)
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the key (and value) projection (all kv heads)."""
        if self.mla is not None:
            return self.num_heads * (self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim)
        return self.num_kv_heads * self.head_dim

    @property
    def v_dim(self) -> int:
        """Width of the value projection."""
        if self.mla is not None:
            return self.num_heads * self.mla.v_head_dim
        return self.num_kv_heads * self.head_dim

    def linears(self, hidden: int) -> list[Linear]:
        """The projections of one attention block, as the transformers modules hold them."""
        if self.mla is not None:
            m = self.mla
            out: list[Linear] = []
            q_head = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank is None:
                out.append(Linear(name="q_proj", d_in=hidden, d_out=self.num_heads * q_head))
            else:
                out.append(Linear(name="q_a_proj", d_in=hidden, d_out=m.q_lora_rank))
                out.append(Linear(name="q_b_proj", d_in=m.q_lora_rank, d_out=self.num_heads * q_head))
            out.append(Linear(name="kv_a_proj_with_mqa", d_in=hidden, d_out=m.kv_lora_rank + m.qk_rope_head_dim))
            out.append(
                Linear(name="kv_b_proj", d_in=m.kv_lora_rank, d_out=self.num_heads * (m.qk_nope_head_dim + m.v_head_dim))
            )
            out.append(Linear(name="o_proj", d_in=self.num_heads * m.v_head_dim, d_out=hidden, bias=self.o_bias))
            return out
        if self.fused_qkv:
            qkv = [Linear(name=self.qkv_name, d_in=hidden, d_out=self.q_dim + 2 * self.kv_dim, bias=self.qkv_bias)]
        else:
            qkv = [
                Linear(name="q_proj", d_in=hidden, d_out=self.q_dim, bias=self.qkv_bias),
                Linear(name="k_proj", d_in=hidden, d_out=self.kv_dim, bias=self.qkv_bias),
                Linear(name="v_proj", d_in=hidden, d_out=self.kv_dim, bias=self.qkv_bias),
            ]
        return qkv + [Linear(name=self.o_name, d_in=self.q_dim, d_out=hidden, bias=self.o_bias)]

    def norm_numel(self) -> int:
        """Small per-layer vectors inside attention: q/k norms, MLA's latent norms, GPT-OSS's sinks."""
        if self.mla is not None:
            return self.mla.kv_lora_rank + (self.mla.q_lora_rank or 0)
        return self.qk_norm_numel + (self.num_heads if self.sinks else 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class MoESpec:
    """Routed mixture-of-experts MLP (Mixtral, Qwen-MoE, OLMoE, DeepSeek)."""

    num_experts: int
    top_k: int
    expert_intermediate: int
    num_shared_experts: int = 0
    shared_intermediate: int = 0
    """Width of the shared expert MLP (Qwen2-MoE: one shared MLP; DeepSeek: n_shared * moe_intermediate)."""
    shared_expert_gate: bool = False
    """Qwen2-MoE's sigmoid gate on the shared expert (Linear hidden->1)."""
    router_bias_numel: int = 0
    """DeepSeek-V3 ``e_score_correction_bias`` (num_experts)."""
    expert_names: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")
    """Module names of an expert's gate, up and down projections (Mixtral: w1, w3, w2)."""
    router_bias: bool = False
    """The router Linear(h, E) has a bias (GPT-OSS ``GptOssTopKRouter.bias``)."""
    expert_bias: bool = False
    """Every expert projection has a bias (GPT-OSS ``gate_up_proj_bias`` (E, 2i), ``down_proj_bias`` (E, h))."""
    dense_dispatch: bool = False
    """Every token runs through every expert, scaled by its (mostly zero) routing score (Llama-4
    ``Llama4TextMoe``: ``hidden_states.repeat(num_experts, 1) * router_scores`` and one ``torch.bmm`` over all
    experts): activations scale with ``num_experts``, not ``top_k``; compute and active parameters with top_k."""
    clamped_swiglu: bool = False
    """GPT-OSS's expert activation (``GptOssExperts._apply_gate``): ``gate.clamp(max=limit)``,
    ``up.clamp(-limit, limit)``, ``glu = gate * sigmoid(gate * alpha)``, ``(up + 1) * glu`` -- per routed token it
    keeps the clamped gate, the sigmoid, glu and up + 1 (4 i) where SwiGLU keeps the SiLU output (i)."""


    @property
    def rows_per_token(self) -> int:
        """Expert rows each token adds to the expert activations: top_k, or every expert (``dense_dispatch``)."""
        return self.num_experts if self.dense_dispatch else self.top_k


@dataclass(frozen=True, slots=True, kw_only=True)
class DecoderSpec:
    """A decoder-only transformer LLM."""

    hidden_size: int
    num_layers: int
    vocab_size: int
    attention: AttentionSpec
    intermediate_size: int
    """Width of the dense MLP (dense layers of an MoE model too)."""
    gated_mlp: bool = True
    mlp_names: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")
    """Module names of the dense MLP's gate, up and down projections (StarCoder2: -, c_fc, c_proj)."""
    mlp_bias: bool = False
    act_saved: int = 1
    """Tensors of the intermediate width the activation of a plain (non-gated) MLP saves, besides the down
    projection's input: 1 for one-kernel activations (GELU, GELU-tanh: their input; ReLU² ``relu`` then
    ``square``: the ReLU output), 4 for ``NewGELUActivation`` (``gelu_new``, Phi-1/2:
    ``0.5 * x * (1 + tanh(c * (x + 0.044715 * x**3)))`` keeps x, the tanh output, 0.5·x and 1 + tanh)."""
    act_saved_autocast: tuple[int, int] = (1, 0)
    """(16-bit, fp32) tensors the activation saves under 16-bit autocast, where ``torch.pow`` (autocast's fp32
    list) upcasts: ``gelu_new`` (1, 3) -- pow saves an fp32 copy of x and the tanh chain after it is fp32, 0.5·x
    stays 16-bit; ReLU² (1, 1) -- ``torch.square`` of the 16-bit ReLU output saves an fp32 copy of it
    (``ReLUSquaredActivation``: ``torch.square(F.relu(x))``)."""
    fused_gate_up: bool = False
    """Gate and up projections are one ``gate_up_proj`` Linear(h, 2i) (Phi-3); same count, other LoRA names."""
    moe: MoESpec | None = None
    moe_layers: tuple[int, ...] = ()
    """Indices of layers whose MLP is the MoE block; the others are dense."""
    tie_embeddings: bool = False
    norm_kind: str = "rms"
    """``rms`` (RMSNorm, weight only), ``layer`` (LayerNorm, weight and bias), ``layer_nobias`` (LayerNorm,
    weight only: Cohere, OLMo's q/k norms) or ``none`` (OLMo-1's non-parametric LayerNorm)."""
    norms_per_layer: int = 2
    """Hidden-size norms per layer: 2 (pre-norm), 4 (Gemma-2/3, GLM-4 sandwich), 2 (OLMo-2 post-norm),
    1 (parallel attention + MLP)."""
    norm_layout: str = "pre"
    """Where the norms sit: ``pre`` (Llama: before attention and MLP), ``sandwich`` (Gemma-2/3, GLM-4: before
    and after each), ``post`` (OLMo-2/3, EXAONE-4: after each, on the branch output) or ``parallel``
    (Cohere, Phi-1/2, GPT-NeoX: one norm feeds attention and MLP, whose outputs are summed)."""
    norm_weight_fp32: bool = False
    """The RMSNorm weight multiplies the fp32 normalised tensor (Gemma ``(1 + w.float()) * x``, Helium,
    OLMo-2/3 ``(w * x).to(dtype)``): the tensor the weight multiply saves is fp32."""
    residual_dropout: bool = False
    """Dropout on the attention and MLP outputs in training (Seed-OSS ``residual_dropout``)."""
    logit_softcap: bool = False
    """Gemma-2 final logit soft-capping (adds fp32 copies of the logits)."""
    lm_head_bias: bool = False
    """Phi-1/2's ``lm_head`` has a bias."""
    max_position_embeddings: int = 0

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "vocab_size", "intermediate_size"):
            if getattr(self, name) <= 0:
                raise SpecError(f"{name}={getattr(self, name)} must be positive")
        if self.norm_kind not in ("rms", "layer", "layer_nobias", "none"):
            raise SpecError(f"norm_kind={self.norm_kind!r} must be rms, layer, layer_nobias or none")
        if self.norm_layout not in ("pre", "sandwich", "post", "parallel"):
            raise SpecError(f"norm_layout={self.norm_layout!r} must be pre, sandwich, post or parallel")
        if self.moe is not None and not self.moe_layers:
            raise SpecError("an MoE model needs moe_layers (the indices of its MoE layers)")
        if any(i < 0 or i >= self.num_layers for i in self.moe_layers):
            raise SpecError(f"moe_layers {self.moe_layers} outside 0..{self.num_layers - 1}")

    @property
    def norm_numel_per_norm(self) -> int:
        """Elements of one hidden-size norm."""
        return self.hidden_size * {"layer": 2, "none": 0}.get(self.norm_kind, 1)

    def dense_mlp_linears(self, intermediate: int | None = None, prefix: str = "") -> list[Linear]:
        """Projections of a dense MLP (gated: gate/up/down; plain: up/down)."""
        i = self.intermediate_size if intermediate is None else intermediate
        h = self.hidden_size
        if self.gated_mlp and self.fused_gate_up:
            return [
                Linear(name=prefix + "gate_up_proj", d_in=h, d_out=2 * i, bias=self.mlp_bias),
                Linear(name=prefix + "down_proj", d_in=i, d_out=h, bias=self.mlp_bias),
            ]
        if self.gated_mlp:
            return [
                Linear(name=prefix + "gate_proj", d_in=h, d_out=i, bias=self.mlp_bias),
                Linear(name=prefix + "up_proj", d_in=h, d_out=i, bias=self.mlp_bias),
                Linear(name=prefix + "down_proj", d_in=i, d_out=h, bias=self.mlp_bias),
            ]
        return [
            Linear(name=prefix + self.mlp_names[1], d_in=h, d_out=i, bias=self.mlp_bias),
            Linear(name=prefix + self.mlp_names[2], d_in=i, d_out=h, bias=self.mlp_bias),
        ]

    def is_moe_layer(self, index: int) -> bool:
        """Whether layer ``index`` has the MoE block."""
        return self.moe is not None and index in _moe_layer_set(self.moe_layers)

    def mlp_linears(self, index: int) -> list[Linear]:
        """Projections of layer ``index``'s MLP, routed experts stacked with ``count``."""
        moe = self.moe
        if moe is None or index not in self.moe_layers:
            return self.dense_mlp_linears()
        h, e, i = self.hidden_size, moe.num_experts, moe.expert_intermediate
        g, u, d = moe.expert_names
        out = [
            Linear(name="gate", d_in=h, d_out=e, bias=moe.router_bias),
            Linear(name=g, d_in=h, d_out=i, count=e, expert=True, bias=moe.expert_bias),
            Linear(name=u, d_in=h, d_out=i, count=e, expert=True, bias=moe.expert_bias),
            Linear(name=d, d_in=i, d_out=h, count=e, expert=True, bias=moe.expert_bias),
        ]
        if moe.num_shared_experts and moe.shared_intermediate:
            out += self.dense_mlp_linears(moe.shared_intermediate, prefix="shared_experts.")
        if moe.shared_expert_gate:
            out.append(Linear(name="shared_expert_gate", d_in=h, d_out=1))
        return out

    def layer_linears(self, index: int) -> list[Linear]:
        """Every projection of layer ``index`` (a fresh list; the Linear objects are shared)."""
        return list(_layer_linears(self, self.is_moe_layer(index)))

    def layer_numel(self, index: int) -> int:
        """Parameters of layer ``index``: projections, norms, router bias."""
        return _layer_numel(self, self.is_moe_layer(index))

    def expert_numel(self, index: int) -> int:
        """Parameters of routed experts in layer ``index`` (0 for a dense layer)."""
        return sum(lin.numel for lin in self.layer_linears(index) if lin.expert)

    @property
    def embedding_numel(self) -> int:
        """Input embedding table."""
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_numel(self) -> int:
        """Output projection (0 when tied to the input embedding)."""
        bias = self.vocab_size if self.lm_head_bias else 0
        return bias + (0 if self.tie_embeddings else self.vocab_size * self.hidden_size)

    @property
    def num_params(self) -> int:
        """Exact parameter count (embeddings, layers, final norm, untied lm_head)."""
        return _decoder_num_params(self)

    @property
    def num_active_params(self) -> int:
        """Parameters one token passes through (top-k of the routed experts)."""
        total = self.num_params
        if self.moe is None:
            return total
        inactive_share = (self.moe.num_experts - self.moe.top_k) / self.moe.num_experts
        per_layer = self.expert_numel(self.moe_layers[0])
        return total - round(per_layer * len(self.moe_layers) * inactive_share)

    @property
    def largest_layer_numel(self) -> int:
        """Parameters of the largest decoder layer (an FSDP unit when wrapping per layer)."""
        return max(self.layer_numel(i) for i in range(self.num_layers))


@lru_cache(maxsize=256)
def _moe_layer_set(layers: tuple[int, ...]) -> frozenset[int]:
    """Membership set of the MoE layer indices."""
    return frozenset(layers)


@lru_cache(maxsize=512)
def _layer_linears(dec: DecoderSpec, moe_layer: bool) -> tuple[Linear, ...]:
    """Projections of a dense or an MoE layer (every dense layer is alike, and every MoE layer)."""
    index = dec.moe_layers[0] if moe_layer else next(i for i in range(dec.num_layers) if not dec.is_moe_layer(i))
    return tuple(dec.attention.linears(dec.hidden_size) + dec.mlp_linears(index))


@lru_cache(maxsize=512)
def _layer_numel(dec: DecoderSpec, moe_layer: bool) -> int:
    """Parameters of a dense or an MoE layer."""
    n = sum(lin.numel for lin in _layer_linears(dec, moe_layer))
    n += dec.norms_per_layer * dec.norm_numel_per_norm + dec.attention.norm_numel()
    if moe_layer and dec.moe is not None:
        n += dec.moe.router_bias_numel
    return n


@lru_cache(maxsize=256)
def _decoder_num_params(dec: DecoderSpec) -> int:
    """Exact decoder parameter count."""
    layers = sum(dec.layer_numel(i) for i in range(dec.num_layers))
    return dec.embedding_numel + layers + dec.norm_numel_per_norm + dec.lm_head_numel


@dataclass(frozen=True, slots=True, kw_only=True)
class VisionTowerSpec:
    """An image encoder: a ViT (CLIP, SigLIP, Qwen2-VL) or a ConvNeXt (MGM's auxiliary encoder)."""

    name: str
    """Its ``Part`` value: ``vision`` or ``vision_aux``."""
    kind: str
    """``vit`` or ``convnext``."""
    image_size: int
    patch_size: int
    num_params: int
    """Exact parameter count of the tower as the VLM holds it."""
    hidden_size: int = 0
    num_layers: int = 0
    num_heads: int = 0
    intermediate_size: int = 0
    stage_dims: tuple[int, ...] = ()
    stage_depths: tuple[int, ...] = ()
    class_token: bool = False
    num_patches: int = 0
    """Patches per pass when the input is not a square of ``image_size`` (Qwen2-VL dynamic resolution); 0: square."""
    passes_per_image: int = 1
    """Tower forward passes per image (MGM-HD: 2x2 grid + global view = 5 CLIP passes)."""
    positions_per_pass: int = 0
    """Output positions of one pass (CLIP-336: 576 patches; ConvNeXt at 768 px: 192x192)."""
    out_channels: int = 0
    """Channels of the tower output handed to the connector (MGM aux: 2880 concatenated)."""
    aux_positions_per_image: int = 0
    """Total output positions per image over all passes (MGM-HD aux: 4 x 192^2 + 96^2 ... as MGM crops)."""
    attention: str = "eager"
    """``eager``: the tower runs eager attention (LLaVA/MGM repos' CLIP); ``packed``: transformers' Qwen-VL
    towers, all images in one packed sequence with per-image (varlen) attention following the scenario's
    kernel (no (L x L) matrix with flash/SDPA); ``native``: a transformers tower (Gemma 3's SigLIP) that runs the
    model's attention implementation, one image per pass."""
    block: str = "vit"
    """Layer layout of a trained tower: ``vit`` (CLIP/SigLIP, Korthikanti), ``qwen2_vl`` (LayerNorm, fp32
    rotary, QuickGELU MLP), ``qwen2_5_vl`` (RMSNorm, fp32 rotary, gated SiLU MLP with biases)."""
    window_patches: int = 0
    """Patches per attention window in windowed layers (Qwen2.5-VL: 112 px windows = 64 patches); 0: none."""
    full_attention_layers: int = 0
    """Layers attending over the whole image when the others are windowed (Qwen2.5-VL ``fullatt_block_indexes``)."""

    @property
    def patches_per_pass(self) -> int:
        """Patch tokens one ViT pass attends over (class token included)."""
        n = self.num_patches or (self.image_size // self.patch_size) ** 2
        return n + (1 if self.class_token else 0)

    @property
    def output_positions_per_image(self) -> int:
        """Positions of the tower's output per image, over all passes."""
        if self.aux_positions_per_image:
            return self.aux_positions_per_image
        return self.passes_per_image * self.positions_per_pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorSpec:
    """A trainable module between a vision tower and the LLM (projector, MGM patch-info mining)."""

    name: str
    kind: str
    """``mlp`` (LLaVA mlp2x_gelu), ``mgm_mining`` (MGM vlm_uni heads), ``merger`` (Qwen2-VL), ``gemma3_pool``
    (Gemma 3: avg-pool to ``mm_tokens_per_image``, RMSNorm, bias-free projection), ``anyres_mlp`` (LLaVA-NeXT:
    the mlp over every tower position of the base view and the grid tiles, before unpadding)."""
    linears: tuple[Linear, ...]
    norm_numel: int = 0
    norm: str = "layernorm"
    """The input norm of a ``merger``: ``layernorm`` (Qwen2-VL ``ln_q``) or ``rmsnorm`` (Qwen2.5-VL)."""
    group: int = 1
    """Tower positions merged into one connector input row (Qwen-VL merger: spatial_merge_size^2 = 4)."""
    extra_numel: int = 0
    """Bare parameters trained with the connector (LLaVA-NeXT ``image_newline``: one LLM-width vector)."""

    @property
    def num_params(self) -> int:
        """Exact parameter count."""
        return sum(lin.numel for lin in self.linears) + self.norm_numel + self.extra_numel


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """What the estimator needs to know about a model."""

    name: str
    model_type: str
    decoder: DecoderSpec
    towers: tuple[VisionTowerSpec, ...] = ()
    connectors: tuple[ConnectorSpec, ...] = ()
    image_tokens: int = 0
    """LLM tokens per image (LLaVA-1.5: 576; MGM-HD: 2880)."""
    source: str = ""
    moe_block_class: str = ""
    """transformers class of the MoE block, for ``set_z3_leaf_modules`` (MixtralSparseMoeBlock)."""
    decoder_layer_class: str = ""
    """transformers class of a decoder layer (FSDP auto-wrap)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_vlm(self) -> bool:
        """Has vision towers."""
        return bool(self.towers)

    @property
    def is_moe(self) -> bool:
        """Has routed experts."""
        return self.decoder.moe is not None

    def tower(self, name: str) -> VisionTowerSpec | None:
        """The tower called ``name`` (``vision``/``vision_aux``), if any."""
        for t in self.towers:
            if t.name == name:
                return t
        return None

    def part_numel(self, part: Part) -> int:
        """Parameters in one part."""
        if part is Part.LLM:
            return self.decoder.num_params
        if part is Part.PROJECTOR:
            return sum(c.num_params for c in self.connectors)
        tower = self.tower(part.value)
        return tower.num_params if tower else 0

    @property
    def parts(self) -> tuple[Part, ...]:
        """Parts this model has."""
        return tuple(p for p in Part if p is Part.LLM or self.part_numel(p) > 0)

    @property
    def num_params(self) -> int:
        """Exact total parameter count."""
        return sum(self.part_numel(p) for p in Part)

    @property
    def num_active_params(self) -> int:
        """Parameters one token passes through (MoE: top-k experts)."""
        return self.num_params - self.decoder.num_params + self.decoder.num_active_params
