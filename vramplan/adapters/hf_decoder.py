"""Decoder LLM families: one Hugging Face ``config.json`` (text part) -> ``DecoderSpec``.

Owns the per-family rules that make parameter counts exact: which projections carry a bias, q/k
norms, head_dim defaults, tied embeddings, norms per layer, and which layers hold the MoE block.
Each builder names the transformers module it mirrors (transformers 5.x ``models/<family>/modeling_*.py``;
the counts are the same as in 4.4x, where experts were separate ``nn.Linear`` modules).
Imports only ``vramplan.core`` and ``._config``; never torch or transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..core.errors import SpecError
from ..core.model import AttentionSpec, DecoderSpec, MLASpec, MoESpec
from ._config import Cfg


@dataclass(frozen=True, slots=True)
class DecoderBuild:
    """A parsed decoder and the transformers class names the estimator needs."""

    decoder: DecoderSpec
    decoder_layer_class: str
    moe_block_class: str = ""
    notes: tuple[str, ...] = ()


# Values transformers' config classes use when a key is absent. Applied only to nested sub-configs
# (llava-hf ``text_config`` is saved as a diff against LlamaConfig defaults); a top-level config must
# name its shape keys.
SUBCONFIG_DEFAULTS: dict[str, dict[str, object]] = {
    "llama": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
              "num_hidden_layers": 32, "num_attention_heads": 32},
    "mistral": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
                "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8},
    "qwen2": {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
              "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32},
}


def _base(c: Cfg) -> tuple[int, int, int, int, int, int]:
    """hidden, layers, vocab, heads, kv heads, intermediate (validated positive)."""
    c.positive("hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads")
    heads = c.integer("num_attention_heads")
    kv = c.integer("num_key_value_heads", default=heads)
    return (c.integer("hidden_size"), c.integer("num_hidden_layers"), c.integer("vocab_size"), heads, kv,
            c.integer("intermediate_size"))


def _head_dim(c: Cfg, hidden: int, heads: int, default: int | None = None) -> int:
    """``head_dim`` from the config; else the family default; else hidden // heads."""
    value = c.opt_int("head_dim")
    if value is not None:
        return value
    return default if default is not None else hidden // heads


def _sliding(c: Cfg, *, needs_flag: bool) -> int | None:
    """Sliding-window width (Qwen2/Qwen3 use it only with ``use_sliding_window``)."""
    if needs_flag and not c.flag("use_sliding_window", False):
        return None
    return c.opt_int("sliding_window")


def _moe_layers(c: Cfg, layers: int) -> tuple[int, ...]:
    """Qwen2-MoE / Qwen3-MoE rule (``Qwen2MoeDecoderLayer.__init__``): not in ``mlp_only_layers`` and
    ``(i + 1) % decoder_sparse_step == 0``."""
    step = c.integer("decoder_sparse_step", default=1)
    only_mlp = set(c.raw("mlp_only_layers", []) or [])
    if step < 1:
        raise SpecError(f"{c.path}.decoder_sparse_step={step} must be at least 1")
    return tuple(i for i in range(layers) if i not in only_mlp and (i + 1) % step == 0)


def _dense(c: Cfg, kind: str, *, qkv_bias: bool | None = None, o_bias: bool | None = None,
           head_dim_default: int | None = None, tie_default: bool = False, qk_norm: bool = False,
           norms: int = 2, fused: bool = False, sliding_flag: bool = False, mlp_bias: bool | None = None,
           qk_norm_full: bool = False, norm_layout: str = "pre", norm_kind: str = "rms",
           fused_gate_up: bool | None = None, softcap_default: float | None = None,
           kv_default: int | None = None) -> DecoderSpec:
    """Dense decoder shared by Llama-like families. ``qkv_bias``/``o_bias`` None: ``attention_bias``;
    ``mlp_bias`` None: the ``mlp_bias`` key for Llama-kind families, else False. ``qk_norm``: per-head q/k
    norms (2 head_dim weights); ``qk_norm_full``: q/k norms over all heads (q_dim + kv_dim weights, OLMo-2).
    ``softcap_default``: the family's ``final_logit_softcapping`` default (a null value turns it off)."""
    hidden, layers, vocab, heads, kv, inter = _base(c)
    if kv_default is not None and c.raw("num_key_value_heads") is None:
        kv = kv_default
    head_dim = _head_dim(c, hidden, heads, head_dim_default)
    attn_bias = c.flag("attention_bias", False)
    qk_numel = 2 * head_dim if qk_norm else (heads + kv) * head_dim if qk_norm_full else 0
    attention = AttentionSpec(
        num_heads=heads, num_kv_heads=kv, head_dim=head_dim,
        qkv_bias=attn_bias if qkv_bias is None else qkv_bias,
        o_bias=attn_bias if o_bias is None else o_bias,
        qk_norm_numel=qk_numel, fused_qkv=fused, sliding_window=_sliding(c, needs_flag=sliding_flag),
    )
    softcap = False
    if softcap_default is not None:
        softcap = c.data.get("final_logit_softcapping", softcap_default) is not None  # null: off
    elif c.data.get("final_logit_softcapping") is not None:
        softcap = True
    if mlp_bias is None:
        mlp_bias = c.flag("mlp_bias", False) if kind == "llama" else False
    return DecoderSpec(
        hidden_size=hidden, num_layers=layers, vocab_size=vocab, attention=attention,
        intermediate_size=inter, mlp_bias=mlp_bias,
        fused_gate_up=fused if fused_gate_up is None else fused_gate_up,
        tie_embeddings=c.flag("tie_word_embeddings", tie_default), norms_per_layer=norms,
        norm_layout=norm_layout, norm_kind=norm_kind, logit_softcap=softcap,
        max_position_embeddings=c.integer("max_position_embeddings", default=0),
    )


def _with_moe(d: DecoderSpec, moe: MoESpec, moe_layers: tuple[int, ...], *,
              attention: AttentionSpec | None = None) -> DecoderSpec:
    """``d`` with routed experts in ``moe_layers`` (none: stays dense)."""
    return replace(d, moe=moe if moe_layers else None, moe_layers=moe_layers, attention=attention or d.attention)


def build_llama(c: Cfg) -> DecoderBuild:
    """``models/llama/modeling_llama.py``: attention_bias on q/k/v/o, mlp_bias on the MLP."""
    return DecoderBuild(_dense(c, "llama"), "LlamaDecoderLayer")


def build_mistral(c: Cfg) -> DecoderBuild:
    """``models/mistral/modeling_mistral.py``: no biases, optional explicit head_dim."""
    return DecoderBuild(_dense(c, "mistral", qkv_bias=False, o_bias=False), "MistralDecoderLayer")


def build_qwen2(c: Cfg) -> DecoderBuild:
    """``models/qwen2/modeling_qwen2.py``: q/k/v bias=True, o_proj bias=False."""
    return DecoderBuild(_dense(c, "qwen2", qkv_bias=True, o_bias=False, sliding_flag=True), "Qwen2DecoderLayer")


def build_qwen3(c: Cfg) -> DecoderBuild:
    """``models/qwen3/modeling_qwen3.py``: attention_bias (default False), q_norm/k_norm over head_dim
    (default 128)."""
    d = _dense(c, "qwen3", head_dim_default=128, qk_norm=True, sliding_flag=True)
    return DecoderBuild(d, "Qwen3DecoderLayer")


def build_gemma(c: Cfg) -> DecoderBuild:
    """``models/gemma/modeling_gemma.py``: head_dim 256 by default, tied embeddings by default (the
    ``normalizer`` in the scaled embedding is a buffer, not a parameter)."""
    d = _dense(c, "gemma", head_dim_default=256, tie_default=True)
    return DecoderBuild(replace(d, norm_weight_fp32=True), "GemmaDecoderLayer")


def build_gemma2(c: Cfg) -> DecoderBuild:
    """``models/gemma2/modeling_gemma2.py``: four RMSNorms per layer (input, post_attention,
    pre_feedforward, post_feedforward), tied by default, final logit soft-capping (default 30) and
    attention-score soft-capping (default 50; eager only, ``_supports_sdpa = False``)."""
    d = _dense(c, "gemma2", head_dim_default=256, tie_default=True, norms=4, norm_layout="sandwich",
               softcap_default=30.0)
    attn_cap = c.data.get("attn_logit_softcapping", 50.0) is not None  # Gemma2Config default 50.0; null: off
    d = replace(d, norm_weight_fp32=True, attention=replace(d.attention, logit_softcap=attn_cap))
    return DecoderBuild(d, "Gemma2DecoderLayer")


def build_phi3(c: Cfg) -> DecoderBuild:
    """``models/phi3/modeling_phi3.py``: fused ``qkv_proj`` and ``gate_up_proj`` (no biases)."""
    d = _dense(c, "phi3", qkv_bias=False, o_bias=False, fused=True)
    return DecoderBuild(d, "Phi3DecoderLayer", notes=("Phi-3 fuses q/k/v into qkv_proj and gate/up into "
                                                      "gate_up_proj; LoRA target names follow the fused modules",))


def build_gemma3(c: Cfg) -> DecoderBuild:
    """``models/gemma3/modeling_gemma3.py`` (``Gemma3ForCausalLM``, model_type ``gemma3_text``): Gemma-2's
    four RMSNorms per layer and ``(1 + w)`` fp32 norm weights, plus per-head ``q_norm``/``k_norm`` over
    head_dim (default 256); tied by default; ``final_logit_softcapping`` off by default (null)."""
    d = _dense(c, "gemma3", head_dim_default=256, tie_default=True, norms=4, norm_layout="sandwich", qk_norm=True)
    attn_cap = c.data.get("attn_logit_softcapping") is not None  # Gemma3TextConfig default None
    d = replace(d, norm_weight_fp32=True, attention=replace(d.attention, logit_softcap=attn_cap))
    return DecoderBuild(d, "Gemma3DecoderLayer")


def build_granite(c: Cfg) -> DecoderBuild:
    """``models/granite/modeling_granite.py``: Llama modules (``attention_bias``, ``mlp_bias``); the
    embedding/residual/attention multipliers and ``logits_scaling`` are Python floats (their multiplies and
    divides save nothing for backward; the unscaled logits are freed by the division)."""
    return DecoderBuild(_dense(c, "llama"), "GraniteDecoderLayer")


def build_smollm3(c: Cfg) -> DecoderBuild:
    """``models/smollm3/modeling_smollm3.py``: Llama modules; ``no_rope_layers`` only skips RoPE."""
    return DecoderBuild(_dense(c, "llama", sliding_flag=True), "SmolLM3DecoderLayer")


def build_ministral(c: Cfg) -> DecoderBuild:
    """``models/ministral/modeling_ministral.py``: Mistral modules (no biases), sliding ``layer_types``."""
    return DecoderBuild(_dense(c, "mistral", qkv_bias=False, o_bias=False), "MinistralDecoderLayer")


def build_internlm3(c: Cfg) -> DecoderBuild:
    """InternLM3 (``model_type`` ``internlm3``): transformers builds it as ``LlamaForCausalLM``
    (``models/auto/modeling_auto.py``), Llama modules with ``attention_bias``/``mlp_bias``."""
    return DecoderBuild(_dense(c, "llama"), "LlamaDecoderLayer")


def build_helium(c: Cfg) -> DecoderBuild:
    """``models/helium/modeling_helium.py``: Llama modules, ``o_proj`` is Linear(hidden, hidden) (so the
    heads must span hidden_size), RMSNorm weight applied in fp32 (``self.weight.to(float32) * x``)."""
    d = _dense(c, "llama", o_bias=False)
    if d.attention.q_dim != d.hidden_size:
        raise SpecError(f"{c.path}: helium needs num_attention_heads * head_dim == hidden_size "
                        f"({d.attention.q_dim} != {d.hidden_size}); HeliumAttention.o_proj reads hidden_size features")
    return DecoderBuild(replace(d, norm_weight_fp32=True), "HeliumDecoderLayer")


def build_seed_oss(c: Cfg) -> DecoderBuild:
    """``models/seed_oss/modeling_seed_oss.py``: q/k/v bias ``attention_bias`` (default True), o_proj bias
    ``attention_out_bias`` (default False), ``mlp_bias``; dropout on both branch outputs
    (``residual_dropout``, default 0.1) keeps a bool mask per element in training."""
    d = _dense(c, "llama", qkv_bias=c.flag("attention_bias", True), o_bias=c.flag("attention_out_bias", False))
    p = float(c.raw("residual_dropout", 0.1) or 0.0)
    return DecoderBuild(replace(d, residual_dropout=p > 0), "SeedOssDecoderLayer")


def build_olmo2(c: Cfg) -> DecoderBuild:
    """``models/olmo2/modeling_olmo2.py`` (and ``olmo3``): post-norm layers (``post_attention_layernorm`` on
    the attention output, ``post_feedforward_layernorm`` on the MLP output, no input norm), q_norm over
    ``heads * head_dim`` and k_norm over ``kv_heads * head_dim`` applied to the projections, RMSNorm
    weight applied in fp32 (``(self.weight * x).to(input_dtype)``)."""
    d = _dense(c, "olmo2", qk_norm_full=True, norm_layout="post")
    cls = "Olmo3DecoderLayer" if str(c.raw("model_type", "")) == "olmo3" else "Olmo2DecoderLayer"
    return DecoderBuild(replace(d, norm_weight_fp32=True), cls)


def build_exaone4(c: Cfg) -> DecoderBuild:
    """``models/exaone4/modeling_exaone4.py``: OLMo-2-like post-norm layers, per-head q_norm/k_norm over
    head_dim, no biases."""
    d = _dense(c, "exaone4", qkv_bias=False, o_bias=False, qk_norm=True, norm_layout="post")
    return DecoderBuild(d, "Exaone4DecoderLayer")


def build_glm(c: Cfg) -> DecoderBuild:
    """``models/glm/modeling_glm.py``: q/k/v bias ``attention_bias`` (default True), o_proj without bias,
    fused ``gate_up_proj``, partial rotary (no parameters)."""
    d = _dense(c, "glm", qkv_bias=c.flag("attention_bias", True), o_bias=False, fused_gate_up=True)
    d = replace(d, attention=replace(d.attention, rotary_cat=True))  # apply_rotary_pos_emb: torch.cat([q_embed, q_pass])
    return DecoderBuild(d, "GlmDecoderLayer")


def build_glm4(c: Cfg) -> DecoderBuild:
    """``models/glm4/modeling_glm4.py``: GLM modules plus ``post_self_attn_layernorm`` and
    ``post_mlp_layernorm`` on the branch outputs (four RMSNorms per layer, sandwich)."""
    d = _dense(c, "glm", qkv_bias=c.flag("attention_bias", True), o_bias=False, fused_gate_up=True, norms=4,
               norm_layout="sandwich")
    d = replace(d, attention=replace(d.attention, rotary_cat=True))  # partial rotary via torch.cat, as GLM
    return DecoderBuild(d, "Glm4DecoderLayer")


def build_starcoder2(c: Cfg) -> DecoderBuild:
    """``models/starcoder2/modeling_starcoder2.py``: q/k/v/o and the plain MLP ``c_fc``/``c_proj`` with bias
    (``use_bias``, default True), ``nn.LayerNorm`` with bias (``norm_epsilon``), GELU-tanh MLP
    (``hidden_act`` gelu_pytorch_tanh), tied by default, optional ``residual_dropout``."""
    bias = c.flag("use_bias", True)
    d = _dense(c, "starcoder2", qkv_bias=bias, o_bias=bias, mlp_bias=bias, norm_kind="layer", tie_default=True)
    p = float(c.raw("residual_dropout", 0.0) or 0.0)
    d = replace(d, gated_mlp=False, mlp_names=("", "c_fc", "c_proj"), residual_dropout=p > 0)
    return DecoderBuild(d, "Starcoder2DecoderLayer")


_ACT_SAVED: dict[str, tuple[int, tuple[int, int]]] = {"gelu_new": (4, (1, 3)), "relu2": (1, (1, 1))}
"""``hidden_act`` -> (``DecoderSpec.act_saved``, ``act_saved_autocast``) where its implementation saves more than
one tensor (transformers ``activations.py``: ``NewGELUActivation`` is written out in elementwise ops,
``ReLUSquaredActivation`` squares with ``torch.square``; GELU / GELU-tanh / SiLU are one kernel)."""


def _act_saved(c: Cfg, default: str) -> tuple[int, tuple[int, int]]:
    """``DecoderSpec.act_saved`` and ``act_saved_autocast`` for the config's ``hidden_act``."""
    return _ACT_SAVED.get(str(c.data.get("hidden_act", c.data.get("activation", default))), (1, (1, 0)))


def build_gpt_oss(c: Cfg) -> DecoderBuild:
    """``models/gpt_oss/modeling_gpt_oss.py``: q/k/v/o with bias (``attention_bias``, default True), one learned
    sink logit per head (``GptOssAttention.sinks``), head_dim default 64, alternating sliding/full layers
    (``layer_types``; sliding_window 128), every layer ``GptOssMLP``: router Linear(h, E) with bias
    (``GptOssTopKRouter``), experts ``gate_up_proj`` (E, h, 2i) + bias (E, 2i) and ``down_proj`` (E, i, h) + bias
    (E, h) with i = ``intermediate_size``, clamped SwiGLU (``_apply_gate``), RMSNorm applying its weight in fp32
    (``(self.weight * hidden_states).to(input_dtype)``). Experts are 3-D parameters, not ``nn.Linear``: PEFT's
    module targets never reach them."""
    d = _dense(c, "gpt_oss", qkv_bias=c.flag("attention_bias", True), o_bias=c.flag("attention_bias", True),
               head_dim_default=64, kv_default=8)
    moe = MoESpec(num_experts=c.integer("num_local_experts"), top_k=c.integer("num_experts_per_tok"),
                  expert_intermediate=d.intermediate_size, router_bias=True, expert_bias=True, clamped_swiglu=True,
                  expert_names=("experts.gate_proj", "experts.up_proj", "experts.down_proj"))
    sliding = c.opt_int("sliding_window")
    attention = replace(d.attention, sinks=True, sliding_window=sliding, rotary_cat=True)  # _apply_rotary_emb: cat
    d = replace(_with_moe(d, moe, tuple(range(d.num_layers)), attention=attention), norm_weight_fp32=True)
    return DecoderBuild(d, "GptOssDecoderLayer", "GptOssMLP",
                        ("GPT-OSS experts are fused 3-D parameters (gate_up_proj, down_proj): LoRA targets reach "
                         "attention only; released checkpoints are MXFP4-quantized experts, counted here unquantized",))


def build_llama4_text(c: Cfg) -> DecoderBuild:
    """``models/llama4/modeling_llama4.py`` (``Llama4ForCausalLM``, the text model of Llama-4 Scout/Maverick): Llama
    attention (``attention_bias``, head_dim default 128), weightless L2 q/k norms on RoPE layers (``use_qk_norm``;
    every ``no_rope_layer_interval``-th layer has neither), MoE in ``moe_layers`` (default every
    ``interleave_moe_layer_step``-th layer): router Linear(h, E) without bias, experts ``gate_up_proj`` (E, h, 2i)
    / ``down_proj`` (E, i, h) of ``intermediate_size`` run on every token (``Llama4TextMoe``: repeat + bmm), one
    shared expert MLP of ``intermediate_size``; dense layers of ``intermediate_size_mlp``. Activations count the
    q/k norms on every layer (they skip 1 in ``no_rope_layer_interval``)."""
    data = dict(c.data)
    data["intermediate_size"] = c.integer("intermediate_size_mlp", default=16384)
    cc = Cfg(data, c.path)
    d = _dense(cc, "llama4_text", head_dim_default=128)
    layers = d.num_layers
    step = c.integer("interleave_moe_layer_step", default=1)
    if step < 1:
        raise SpecError(f"{c.path}.interleave_moe_layer_step={step} must be at least 1")
    listed = c.raw("moe_layers")
    moe_layers = tuple(sorted(int(i) for i in listed)) if listed is not None else tuple(range(step - 1, layers, step))
    moe_inter = c.integer("intermediate_size", default=8192)
    moe = MoESpec(num_experts=c.integer("num_local_experts", default=16), top_k=c.integer("num_experts_per_tok", default=1),
                  expert_intermediate=moe_inter, num_shared_experts=1, shared_intermediate=moe_inter,
                  dense_dispatch=True, expert_names=("experts.gate_proj", "experts.up_proj", "experts.down_proj"))
    attention = replace(d.attention, qk_l2_norm=c.flag("use_qk_norm", True))
    return DecoderBuild(_with_moe(d, moe, moe_layers, attention=attention), "Llama4TextDecoderLayer", "Llama4TextMoe",
                        ("Llama-4's transformers MoE runs every token through every expert (Llama4TextMoe: repeat + "
                         "bmm): expert activations scale with num_local_experts",))


def build_gpt_neox(c: Cfg) -> DecoderBuild:
    """``models/gpt_neox/modeling_gpt_neox.py`` (Pythia): fused ``query_key_value`` Linear(h, 3h) and ``dense``
    with bias (``attention_bias``, default True), MLP ``dense_h_to_4h``/``dense_4h_to_h`` always with bias, GELU,
    two ``nn.LayerNorm`` with bias per layer, parallel residual (``use_parallel_residual``, default True:
    ``x + attn(ln1(x)) + mlp(ln2(x))``), partial rotary (``rotary_pct``), untied ``embed_out``."""
    bias = c.flag("attention_bias", True)
    # GPTNeoXConfig has no num_key_value_heads: query_key_value is always Linear(h, 3h)
    cc = Cfg({k: v for k, v in c.data.items() if k not in ("num_key_value_heads", "head_dim")}, c.path)
    d = _dense(cc, "gpt_neox", qkv_bias=bias, o_bias=bias, mlp_bias=True, norm_kind="layer", fused=True,
               fused_gate_up=False)
    attention = replace(d.attention, qkv_name="query_key_value", o_name="dense", rotary_cat=True, value_views_qkv=True)
    layout = "parallel" if c.flag("use_parallel_residual", True) else "pre"
    d = replace(d, attention=attention, gated_mlp=False, mlp_names=("", "dense_h_to_4h", "dense_4h_to_h"),
                norm_layout=layout,  # post_attention_dropout / post_mlp_dropout (hidden_dropout, default 0)
                residual_dropout=float(c.raw("hidden_dropout", 0.0) or 0.0) > 0)
    return DecoderBuild(d, "GPTNeoXLayer")


def build_phi(c: Cfg) -> DecoderBuild:
    """``models/phi/modeling_phi.py`` (Phi-1/1.5/2): q/k/v and ``dense`` with bias, MLP ``fc1``/``fc2`` with bias
    (GELU-new), one ``nn.LayerNorm`` per layer feeding attention and MLP in parallel, partial rotary,
    optional q/k LayerNorms over head_dim with bias (``qk_layernorm``), ``lm_head`` with bias, untied."""
    d = _dense(c, "phi", qkv_bias=True, o_bias=True, mlp_bias=True, norm_kind="layer", norms=1,
               norm_layout="parallel")
    qk = 4 * d.attention.head_dim if c.flag("qk_layernorm", False) else 0
    attention = replace(d.attention, o_name="dense", qk_norm_numel=qk, rotary_cat=True)
    saved, fp32_saved = _act_saved(c, "gelu_new")
    d = replace(d, attention=attention, gated_mlp=False, mlp_names=("", "fc1", "fc2"), lm_head_bias=True,
                act_saved=saved, act_saved_autocast=fp32_saved,
                residual_dropout=float(c.raw("resid_pdrop", 0.0) or 0.0) > 0)  # resid_dropout on both branches
    return DecoderBuild(d, "PhiDecoderLayer")


def build_falcon(c: Cfg) -> DecoderBuild:
    """``models/falcon/modeling_falcon.py``: fused ``query_key_value`` of (heads + 2 kv) * head_dim with kv =
    ``num_kv_heads`` (``new_decoder_architecture``), 1 (``multi_query``) or heads; ``dense``, MLP
    ``dense_h_to_4h``/``dense_4h_to_h`` of ``ffn_hidden_size`` (default 4h), GELU; every linear with bias iff
    ``bias``; ``nn.LayerNorm`` with bias: one per layer (parallel_attn), two (new architecture:
    ``ln_attn``/``ln_mlp``, ``num_ln_in_parallel_attn``) or two sequential; tied by default. Reads the legacy
    keys ``n_head``/``n_layer`` (``FalconConfig.attribute_map``)."""
    data = dict(c.data)
    for old, new in (("n_head", "num_attention_heads"), ("n_layer", "num_hidden_layers")):
        if new not in data and old in data:
            data[new] = data[old]
    hidden = int(data.get("hidden_size", 0) or 0)
    data["intermediate_size"] = data.get("ffn_hidden_size") or 4 * hidden  # FalconConfig has no intermediate_size
    new_arch = bool(data.get("new_decoder_architecture", False))
    heads = int(data.get("num_attention_heads", 0) or 0)
    kv = int(data.get("num_kv_heads") or heads)
    if not new_arch:
        kv = 1 if data.get("multi_query", True) else heads
    data["num_key_value_heads"] = kv
    data.pop("head_dim", None)  # FalconConfig.head_dim is hidden // heads
    cc = Cfg(data, c.path)
    bias = cc.flag("bias", False)
    parallel = cc.flag("parallel_attn", True)
    n_ln = cc.opt_int("num_ln_in_parallel_attn") or (2 if new_arch else 1)
    norms, layout = (2, "pre") if not parallel else ((2, "parallel") if new_arch and n_ln == 2 else (1, "parallel"))
    d = _dense(cc, "falcon", qkv_bias=bias, o_bias=bias, mlp_bias=bias, norm_kind="layer", fused=True,
               fused_gate_up=False, tie_default=True, norms=norms, norm_layout=layout)
    # _split_heads: new architecture indexes K/V out ([-2], [-1]: copies) and broadcasts them to every query head;
    # multi-query indexes one K/V head (copies); otherwise q/k/v are views of the fused output
    attention = replace(d.attention, qkv_name="query_key_value", o_name="dense", kv_expanded=new_arch,
                        sdpa_math_grouped=not new_arch, value_views_qkv=not new_arch and kv == heads)
    d = replace(d, attention=attention, gated_mlp=False, mlp_names=("", "dense_h_to_4h", "dense_4h_to_h"))
    notes = ("alibi=true (Falcon-RW): ALiBi adds no parameters; transformers runs it on the eager/SDPA path "
             "with a bias tensor the estimate does not count",) if cc.flag("alibi", False) else ()
    return DecoderBuild(d, "FalconDecoderLayer", notes=notes)


def build_cohere(c: Cfg) -> DecoderBuild:
    """``models/cohere/modeling_cohere.py`` (Command-R) and ``cohere2`` (Command-R7B, Command-A): Llama
    modules (``attention_bias``), one ``CohereLayerNorm`` per layer (weight, no bias, fp32 statistics) feeding
    attention and MLP in parallel, optional q/k LayerNorms over (heads, head_dim) and (kv, head_dim)
    (``use_qk_norm``, cohere only), tied by default; head_dim = hidden // heads unless the config names it
    (transformers 5.24 keeps an explicit ``head_dim`` over ``Cohere2Config.__post_init__``'s default)."""
    model_type = str(c.raw("model_type", "cohere"))
    cc = c
    d = _dense(cc, "cohere", tie_default=True, norms=1, norm_layout="parallel", norm_kind="layer_nobias",
               mlp_bias=False, qk_norm_full=model_type == "cohere" and cc.flag("use_qk_norm", False))
    if model_type == "cohere2":
        d = replace(d, attention=replace(d.attention, sliding_window=cc.opt_int("sliding_window")))
    return DecoderBuild(d, "Cohere2DecoderLayer" if model_type == "cohere2" else "CohereDecoderLayer")


def build_stablelm(c: Cfg) -> DecoderBuild:
    """``models/stablelm/modeling_stablelm.py``: q/k/v bias ``use_qkv_bias``, o_proj without bias, gated MLP
    without bias, ``nn.LayerNorm`` with bias: two per layer, or one feeding attention and MLP in parallel
    (``use_parallel_residual``); per-head q/k LayerNorms without bias (``qk_layernorm``,
    ``StableLmLayerNormPerHead``: heads + kv LayerNorm(head_dim)), partial rotary, untied by default."""
    parallel = c.flag("use_parallel_residual", False)
    d = _dense(c, "stablelm", qkv_bias=c.flag("use_qkv_bias", False), o_bias=False, mlp_bias=False,
               norm_kind="layer", norms=1 if parallel else 2, norm_layout="parallel" if parallel else "pre",
               qk_norm_full=c.flag("qk_layernorm", False))
    # torch.cat((query_rot, query_pass), dim=-1); q/k LayerNorms per head
    d = replace(d, attention=replace(d.attention, rotary_cat=True, qk_norm_per_head_layer=c.flag("qk_layernorm", False)))
    return DecoderBuild(d, "StableLmDecoderLayer")


def build_nemotron(c: Cfg) -> DecoderBuild:
    """``models/nemotron/modeling_nemotron.py`` (Nemotron-3/4, Minitron): q/k/v/o with ``attention_bias``, plain
    MLP ``up_proj``/``down_proj`` with ``mlp_bias`` and squared ReLU (``relu2``), two
    ``NemotronLayerNorm1P`` (``nn.LayerNorm`` with bias, weight applied as ``1 + w``) per layer, partial
    rotary (default 0.5), untied by default."""
    d = _dense(c, "nemotron", qkv_bias=c.flag("attention_bias", False), o_bias=c.flag("attention_bias", False),
               mlp_bias=c.flag("mlp_bias", False), norm_kind="layer")
    # apply_rotary_pos_emb: torch.cat((q_embed, q_pass), dim=-1), even when q_pass is empty
    saved, autocast_saved = _act_saved(c, "relu2")
    d = replace(d, gated_mlp=False, mlp_names=("", "up_proj", "down_proj"), act_saved=saved,
                act_saved_autocast=autocast_saved, attention=replace(d.attention, rotary_cat=True))
    return DecoderBuild(d, "NemotronDecoderLayer")


def build_olmo(c: Cfg) -> DecoderBuild:
    """``models/olmo/modeling_olmo.py`` (OLMo-1, OLMo-1.7): Llama modules with ``attention_bias``, two
    non-parametric LayerNorms per layer (``OlmoLayerNorm``: ``F.layer_norm`` without weight or bias, in fp32),
    optional ``clip_qkv`` clamping (no parameters), untied by default."""
    d = _dense(c, "olmo", norm_kind="none", mlp_bias=False)
    notes = ("clip_qkv clamps q/k/v in place (no parameters)",) if c.raw("clip_qkv") is not None else ()
    return DecoderBuild(d, "OlmoDecoderLayer", notes=notes)


def build_granitemoe(c: Cfg) -> DecoderBuild:
    """``models/granitemoe/modeling_granitemoe.py``: Granite attention and multipliers (``attention_bias``),
    every layer ``GraniteMoeMoE``: router Linear(h, E) without bias, experts ``gate_up_proj`` (E, 2i, h) and
    ``down_proj`` (E, h, i) with i = ``intermediate_size``, no shared expert (``granitemoeshared`` adds one)."""
    d = _dense(c, "granite", o_bias=None)
    moe = MoESpec(num_experts=c.integer("num_local_experts"), top_k=c.integer("num_experts_per_tok"),
                  expert_intermediate=d.intermediate_size,
                  expert_names=("experts.gate_proj", "experts.up_proj", "experts.down_proj"))
    return DecoderBuild(_with_moe(d, moe, tuple(range(d.num_layers))), "GraniteMoeDecoderLayer", "GraniteMoeMoE")


def build_phimoe(c: Cfg) -> DecoderBuild:
    """``models/phimoe/modeling_phimoe.py`` (Phi-3.5-MoE): q/k/v/o with ``attention_bias``, ``nn.LayerNorm``
    with bias (two per layer and the final one), every layer ``PhimoeSparseMoeBlock``: router Linear(h, E)
    without bias (sparsemixer top-2), experts ``gate_up_proj``/``down_proj`` of ``intermediate_size``;
    ``lm_head`` bias ``lm_head_bias``; untied."""
    d = _dense(c, "phimoe", norm_kind="layer", mlp_bias=False)
    moe = MoESpec(num_experts=c.integer("num_local_experts"), top_k=c.integer("num_experts_per_tok"),
                  expert_intermediate=d.intermediate_size,
                  expert_names=("experts.gate_proj", "experts.up_proj", "experts.down_proj"))
    d = replace(_with_moe(d, moe, tuple(range(d.num_layers))), lm_head_bias=c.flag("lm_head_bias", False))
    return DecoderBuild(d, "PhimoeDecoderLayer", "PhimoeSparseMoeBlock")


def build_mixtral(c: Cfg) -> DecoderBuild:
    """``models/mixtral/modeling_mixtral.py``: every layer is ``MixtralSparseMoeBlock`` (router
    Linear(h, E) without bias; experts w1/w3/w2 of width ``intermediate_size``)."""
    d = _dense(c, "mixtral", qkv_bias=False, o_bias=False)
    moe = MoESpec(num_experts=c.integer("num_local_experts"), top_k=c.integer("num_experts_per_tok"),
                  expert_intermediate=d.intermediate_size, expert_names=("w1", "w3", "w2"))
    return DecoderBuild(_with_moe(d, moe, tuple(range(d.num_layers))), "MixtralDecoderLayer",
                        "MixtralSparseMoeBlock")


def build_qwen2_moe(c: Cfg) -> DecoderBuild:
    """``models/qwen2_moe/modeling_qwen2_moe.py``: q/k/v bias (``qkv_bias``, default True), experts of
    width ``moe_intermediate_size``, one shared expert of ``shared_expert_intermediate_size`` with a
    sigmoid ``shared_expert_gate`` Linear(h, 1); dense layers use ``intermediate_size``."""
    d = _dense(c, "qwen2_moe", qkv_bias=c.flag("qkv_bias", True), o_bias=False, sliding_flag=True)
    shared = c.integer("shared_expert_intermediate_size", default=0)
    moe = MoESpec(num_experts=c.integer("num_experts"), top_k=c.integer("num_experts_per_tok"),
                  expert_intermediate=c.integer("moe_intermediate_size"), num_shared_experts=1 if shared else 0,
                  shared_intermediate=shared, shared_expert_gate=bool(shared))
    layers = _moe_layers(c, d.num_layers) if moe.num_experts > 0 else ()
    return DecoderBuild(_with_moe(d, moe, layers), "Qwen2MoeDecoderLayer", "Qwen2MoeSparseMoeBlock")


def build_qwen3_moe(c: Cfg) -> DecoderBuild:
    """``models/qwen3_moe/modeling_qwen3_moe.py``: Qwen3 attention (q/k norms over head_dim), experts
    of width ``moe_intermediate_size``, no shared expert."""
    d = _dense(c, "qwen3_moe", qk_norm=True, sliding_flag=True)
    # transformers 5 saves the expert count as num_local_experts (Qwen3MoeConfig.attribute_map maps
    # num_experts to it); the Hub configs of Qwen3-30B-A3B / 235B-A22B name it num_experts
    moe = MoESpec(num_experts=c.integer("num_experts", "num_local_experts"), top_k=c.integer("num_experts_per_tok"),
                  expert_intermediate=c.integer("moe_intermediate_size"))
    layers = _moe_layers(c, d.num_layers) if moe.num_experts > 0 else ()
    return DecoderBuild(_with_moe(d, moe, layers), "Qwen3MoeDecoderLayer", "Qwen3MoeSparseMoeBlock")


def build_olmoe(c: Cfg) -> DecoderBuild:
    """``models/olmoe/modeling_olmoe.py``: q_norm over hidden_size, k_norm over
    (hidden // heads) * kv_heads, every layer MoE with experts of width ``intermediate_size``."""
    d = _dense(c, "olmoe")
    kv_dim = (d.hidden_size // d.attention.num_heads) * d.attention.num_kv_heads
    attention = replace(d.attention, qk_norm_numel=d.hidden_size + kv_dim)
    moe = MoESpec(num_experts=c.integer("num_experts"), top_k=c.integer("num_experts_per_tok"),
                  expert_intermediate=d.intermediate_size)
    return DecoderBuild(_with_moe(d, moe, tuple(range(d.num_layers)), attention=attention),
                        "OlmoeDecoderLayer", "OlmoeSparseMoeBlock")


def _build_deepseek(c: Cfg, version: int) -> DecoderBuild:
    """``models/deepseek_v2/modeling_deepseek_v2.py`` and ``deepseek_v3``: MLA attention (q_a/q_b or
    q_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj; RMSNorms over q_lora_rank and kv_lora_rank), MoE in
    layers ``i >= first_k_dense_replace`` with ``i % moe_layer_freq == 0`` (DeepSeek's own modeling
    code; transformers ignores moe_layer_freq, which is 1 in every released config), router
    Linear(h, E) without bias, shared experts as one MLP of ``n_shared_experts * moe_intermediate_size``.
    V3's ``e_score_correction_bias`` is a buffer in transformers 5, not a parameter (not counted)."""
    c.positive("hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads")
    if c.flag("attention_bias", False):
        raise SpecError(f"{c.path}.attention_bias=true is not supported for MLA attention; "
                        "released DeepSeek configs use false")
    hidden, layers, vocab = c.integer("hidden_size"), c.integer("num_hidden_layers"), c.integer("vocab_size")
    heads = c.integer("num_attention_heads")
    mla = MLASpec(q_lora_rank=c.opt_int("q_lora_rank"), kv_lora_rank=c.integer("kv_lora_rank"),
                  qk_nope_head_dim=c.integer("qk_nope_head_dim"), qk_rope_head_dim=c.integer("qk_rope_head_dim"),
                  v_head_dim=c.integer("v_head_dim"))
    attention = AttentionSpec(num_heads=heads, num_kv_heads=heads,
                              head_dim=mla.qk_nope_head_dim + mla.qk_rope_head_dim, mla=mla)
    experts = c.opt_int("n_routed_experts") or 0
    moe_inter = c.integer("moe_intermediate_size") if experts else 0
    first_dense = c.integer("first_k_dense_replace", default=0)
    freq = c.integer("moe_layer_freq", default=1)
    if freq < 1:
        raise SpecError(f"{c.path}.moe_layer_freq={freq} must be at least 1")
    moe_layers = tuple(i for i in range(layers) if experts and i >= first_dense and i % freq == 0)
    shared = c.opt_int("n_shared_experts") or 0
    notes: list[str] = []
    top_k = c.opt_int("num_experts_per_tok")
    if top_k is None and experts:
        # DeepseekV2Config defaults num_experts_per_tok to None (the model cannot route with it); every
        # released DeepSeek-V2 / V2-Lite config sets 6. Parameters do not depend on it, activations do.
        top_k = 6
        notes.append("num_experts_per_tok is null (the DeepseekV2Config default): activations assume 6 "
                     "routed experts per token, as in every released DeepSeek-V2 config")
    # V3's e_score_correction_bias is a buffer in transformers 5 (DeepseekV3TopkRouter: nn.Buffer, kept fp32):
    # not a parameter, never trained, E fp32 values per MoE layer -- not counted.
    moe = MoESpec(num_experts=experts, top_k=top_k or 0, expert_intermediate=moe_inter,
                  num_shared_experts=shared, shared_intermediate=shared * moe_inter) if experts else None
    decoder = DecoderSpec(
        hidden_size=hidden, num_layers=layers, vocab_size=vocab, attention=attention,
        intermediate_size=c.integer("intermediate_size"), moe=moe if moe_layers else None, moe_layers=moe_layers,
        tie_embeddings=c.flag("tie_word_embeddings", False),
        max_position_embeddings=c.integer("max_position_embeddings", default=0),
    )
    if version == 3 and moe_layers:
        notes.append("e_score_correction_bias (E fp32 values per MoE layer) is a buffer in transformers 5, "
                     "not a parameter: not counted, not trained")
    if version == 3 and (c.opt_int("num_nextn_predict_layers") or 0) > 0:
        notes.append("multi-token-prediction layers (num_nextn_predict_layers) are not counted: "
                     "transformers drops them when loading, and they are not trained by HF fine-tuning")
    if version == 2:
        notes.append("transformers names the MoE block DeepseekV2Moe; DeepSeek's remote code "
                     "(trust_remote_code) names it DeepseekV2MoE")
    block = "DeepseekV2Moe" if version == 2 else "DeepseekV3MoE"
    return DecoderBuild(decoder, f"DeepseekV{version}DecoderLayer", block if moe_layers else "", tuple(notes))


def build_deepseek_v1(c: Cfg) -> DecoderBuild:
    """DeepSeek-MoE 16B (``model_type`` ``deepseek``, remote code ``modeling_deepseek.py``): standard
    multi-head attention without biases, MoE layers as in ``_build_deepseek`` (first_k_dense_replace,
    moe_layer_freq, shared experts of ``n_shared_experts * moe_intermediate_size``), no router bias."""
    d = _dense(c, "llama")
    experts = c.integer("n_routed_experts")
    moe_inter = c.integer("moe_intermediate_size")
    first_dense = c.integer("first_k_dense_replace", default=0)
    freq = c.integer("moe_layer_freq", default=1)
    if freq < 1:
        raise SpecError(f"{c.path}.moe_layer_freq={freq} must be at least 1")
    moe_layers = tuple(i for i in range(d.num_layers) if i >= first_dense and i % freq == 0)
    shared = c.opt_int("n_shared_experts") or 0
    moe = MoESpec(num_experts=experts, top_k=c.integer("num_experts_per_tok"), expert_intermediate=moe_inter,
                  num_shared_experts=shared, shared_intermediate=shared * moe_inter)
    return DecoderBuild(_with_moe(d, moe, moe_layers), "DeepseekDecoderLayer", "DeepseekMoE",
                        ("remote-code family (trust_remote_code); counted from its modeling_deepseek.py structure",))


def build_qwen1(c: Cfg) -> DecoderBuild:
    """Qwen-1 (``model_type`` ``qwen``, remote code ``modeling_qwen.py``): fused ``c_attn`` (3h, with bias),
    ``c_proj`` without bias, gated MLP ``w1``/``w2`` of width ``intermediate_size // 2`` and ``c_proj``,
    RMSNorm, untied lm_head."""
    d = _dense(c, "qwen", qkv_bias=True, o_bias=False, fused=False)
    attention = replace(d.attention, fused_qkv=True)
    return DecoderBuild(
        replace(d, attention=attention, intermediate_size=d.intermediate_size // 2, fused_gate_up=False),
        "QWenBlock", "", ("remote-code family (trust_remote_code); LoRA target c_attn = the fused qkv_proj",),
    )


def build_deepseek_v2(c: Cfg) -> DecoderBuild:
    """DeepSeek-V2 / V2-Lite (see ``_build_deepseek``)."""
    return _build_deepseek(c, 2)


def build_deepseek_v3(c: Cfg) -> DecoderBuild:
    """DeepSeek-V3 / R1 (see ``_build_deepseek``)."""
    return _build_deepseek(c, 3)


DECODER_FAMILIES: dict[str, Callable[[Cfg], DecoderBuild]] = {
    "llama": build_llama,
    "mistral": build_mistral,
    "mixtral": build_mixtral,
    "qwen2": build_qwen2,
    "qwen2_moe": build_qwen2_moe,
    "qwen3": build_qwen3,
    "qwen3_moe": build_qwen3_moe,
    "gemma": build_gemma,
    "gemma2": build_gemma2,
    "phi3": build_phi3,
    "gemma3_text": build_gemma3,
    "granite": build_granite,
    "smollm3": build_smollm3,
    "ministral": build_ministral,
    "internlm3": build_internlm3,
    "helium": build_helium,
    "seed_oss": build_seed_oss,
    "olmo2": build_olmo2,
    "olmo3": build_olmo2,
    "exaone4": build_exaone4,
    "glm": build_glm,
    "glm4": build_glm4,
    "starcoder2": build_starcoder2,
    "olmoe": build_olmoe,
    "deepseek": build_deepseek_v1,
    "qwen": build_qwen1,
    "deepseek_v2": build_deepseek_v2,
    "deepseek_v3": build_deepseek_v3,
    "gpt_oss": build_gpt_oss,
    "llama4_text": build_llama4_text,
    "granitemoe": build_granitemoe,
    "phimoe": build_phimoe,
    "gpt_neox": build_gpt_neox,
    "phi": build_phi,
    "falcon": build_falcon,
    "cohere": build_cohere,
    "cohere2": build_cohere,
    "stablelm": build_stablelm,
    "nemotron": build_nemotron,
    "olmo": build_olmo,
}
"""model_type -> builder for every decoder-only family."""


def build_decoder(c: Cfg, model_type: str) -> DecoderBuild:
    """Parse the decoder of family ``model_type``; ``SpecError`` for an unknown family."""
    builder = DECODER_FAMILIES.get(model_type)
    if builder is None:
        raise SpecError(f"{c.path}.model_type={model_type!r} is not a supported decoder family; "
                        f"supported: {', '.join(sorted(DECODER_FAMILIES))}")
    return builder(c)
