"""Decoder LLM families: one Hugging Face ``config.json`` (text part) -> ``DecoderSpec``.

Owns the per-family rules that make parameter counts exact: which projections carry a bias, q/k
norms, head_dim defaults, tied embeddings, norms per layer, and which layers hold the MoE block.
Each builder names the transformers module it mirrors (transformers 5.x ``models/<family>/modeling_*.py``;
the counts are the same as in 4.4x, where experts were separate ``nn.Linear`` modules).
The dense llama-like families live here, the MoE ones in ``hf_decoder_moe``, the LayerNorm / parallel-block
ones in ``hf_decoder_parallel``; ``DECODER_FAMILIES`` registers them all. Imports only ``vramplan.core`` and
``._config``; never torch or transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..core.errors import SpecError
from ._config import Cfg
from ._decoder_common import (
    DecoderBuild,
    _dense,
)
from .hf_decoder_moe import (
    build_deepseek_v1,
    build_deepseek_v2,
    build_deepseek_v3,
    build_gpt_oss,
    build_granitemoe,
    build_llama4_text,
    build_mixtral,
    build_olmoe,
    build_phimoe,
    build_qwen2_moe,
    build_qwen3_moe,
)
from .hf_decoder_parallel import (
    build_cohere,
    build_falcon,
    build_gpt_neox,
    build_nemotron,
    build_olmo,
    build_phi,
    build_stablelm,
)


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
