"""GPT-NeoX-style decoder families: LayerNorm blocks, parallel attention + MLP, non-gated MLPs.

GPT-NeoX (Pythia), Phi(-2), Falcon, Cohere, StableLM, Nemotron and OLMo v1; each builder names the
transformers module it mirrors. Imports only ``vramplan.core`` and ``._config``.
"""

from __future__ import annotations

from dataclasses import replace

from ._config import Cfg
from ._decoder_common import (
    DecoderBuild,
    _act_saved,
    _dense,
)


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
