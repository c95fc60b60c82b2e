"""Mixture-of-experts decoder families: Mixtral, Qwen2/3-MoE, OLMoE, GraniteMoE, PhiMoE, GPT-OSS, Llama-4, DeepSeek v1-v3.

Which layers hold the MoE block, experts (fused 3-D in transformers 5) and their biases, shared experts,
routers, and DeepSeek's MLA attention; each builder names the transformers module it mirrors. Imports only
``vramplan.core`` and ``._config``.
"""

from __future__ import annotations

from dataclasses import replace

from ..core.errors import SpecError
from ..core.model import AttentionSpec, DecoderSpec, MLASpec, MoESpec
from ._config import Cfg
from ._decoder_common import (
    DecoderBuild,
    _dense,
    _moe_layers,
    _with_moe,
)


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




def build_deepseek_v2(c: Cfg) -> DecoderBuild:
    """DeepSeek-V2 / V2-Lite (see ``_build_deepseek``)."""
    return _build_deepseek(c, 2)


def build_deepseek_v3(c: Cfg) -> DecoderBuild:
    """DeepSeek-V3 / R1 (see ``_build_deepseek``)."""
    return _build_deepseek(c, 3)
