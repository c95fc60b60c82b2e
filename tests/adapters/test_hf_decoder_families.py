"""Decoder families on hand-built tiny configs: exact counts worked out by hand, and family details."""

from __future__ import annotations

import pytest
from tiny_configs import EXPECTED, FF, HD, KV, TINY, H

from vramplan.adapters import model_from_config, supported_model_types
from vramplan.core.errors import SpecError


@pytest.mark.parametrize("key", sorted(TINY))
def test_tiny_count_matches_hand_count(key: str) -> None:
    assert model_from_config(TINY[key]).num_params == EXPECTED[key]


def test_every_brief_family_is_supported() -> None:
    families = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "phi3",
                "olmoe", "deepseek_v2", "deepseek_v3", "llava", "qwen2_vl", "mgm", "mgm_gemma", "mgm_mixtral"}
    assert families <= set(supported_model_types())


def test_qwen2_has_qkv_bias_but_not_o_bias() -> None:
    att = model_from_config(TINY["qwen2"]).decoder.attention
    assert (att.qkv_bias, att.o_bias) == (True, False)


def test_qwen3_qk_norms_over_head_dim_and_default_head_dim() -> None:
    att = model_from_config(TINY["qwen3"]).decoder.attention
    assert att.qk_norm_numel == 2 * HD
    config = dict(TINY["qwen3"])
    del config["head_dim"]
    assert model_from_config(config).decoder.attention.head_dim == 128  # Qwen3Config default


def test_gemma_defaults_tied_and_head_dim_256() -> None:
    config = dict(TINY["gemma"])
    del config["head_dim"]
    d = model_from_config(config).decoder
    assert d.tie_embeddings and d.attention.head_dim == 256
    assert not model_from_config({**TINY["gemma"], "tie_word_embeddings": False}).decoder.tie_embeddings


def test_gemma2_four_norms_and_softcap() -> None:
    d = model_from_config(TINY["gemma2"]).decoder
    assert d.norms_per_layer == 4 and d.logit_softcap
    assert not model_from_config({**TINY["gemma2"], "final_logit_softcapping": None}).decoder.logit_softcap


def test_phi3_fused_names_same_count_as_llama() -> None:
    phi = model_from_config(TINY["phi3"])
    names = [lin.name for lin in phi.decoder.layer_linears(0)]
    assert names == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert phi.decoder.layer_linears(0)[2].d_out == 2 * FF
    assert phi.num_params == model_from_config(TINY["llama"]).num_params


def test_mixtral_expert_names_and_classes() -> None:
    m = model_from_config(TINY["mixtral"])
    assert m.decoder.moe is not None and m.decoder.moe.expert_names == ("w1", "w3", "w2")
    assert m.decoder.moe_layers == (0, 1)
    assert (m.moe_block_class, m.decoder_layer_class) == ("MixtralSparseMoeBlock", "MixtralDecoderLayer")
    names = {lin.name for lin in m.decoder.mlp_linears(0)}
    assert {"gate", "w1", "w2", "w3"} <= names


def test_qwen2_moe_sparse_step_mlp_only_and_shared_expert() -> None:
    m = model_from_config(TINY["qwen2_moe"])
    moe = m.decoder.moe
    assert m.decoder.moe_layers == (1,)
    assert moe is not None and moe.shared_expert_gate and moe.shared_intermediate == 48
    assert m.moe_block_class == "Qwen2MoeSparseMoeBlock"


def test_qwen3_moe_layers_and_block() -> None:
    m = model_from_config(TINY["qwen3_moe"])
    assert m.decoder.moe_layers == (1,) and m.moe_block_class == "Qwen3MoeSparseMoeBlock"


def test_olmoe_qk_norm_widths() -> None:
    m = model_from_config(TINY["olmoe"])
    assert m.decoder.attention.qk_norm_numel == H + KV
    assert m.moe_block_class == "OlmoeSparseMoeBlock"


def test_deepseek_v2_first_dense_and_mla() -> None:
    m = model_from_config(TINY["deepseek_v2"])
    d = m.decoder
    assert d.moe_layers == (1, 2) and d.attention.mla is not None and d.attention.mla.q_lora_rank is None
    assert d.moe is not None and d.moe.shared_intermediate == 2 * 24 and d.moe.router_bias_numel == 0
    assert m.decoder_layer_class == "DeepseekV2DecoderLayer" and m.moe_block_class == "DeepseekV2Moe"


def test_deepseek_moe_layer_freq() -> None:
    m = model_from_config({**TINY["deepseek_v2"], "num_hidden_layers": 6, "moe_layer_freq": 2})
    assert m.decoder.moe_layers == (2, 4)


def test_deepseek_v3_correction_bias_is_a_buffer_and_mtp_note() -> None:
    m = model_from_config(TINY["deepseek_v3"])
    assert m.decoder.moe is not None and m.decoder.moe.router_bias_numel == 0
    assert any("e_score_correction_bias" in note for note in m.notes)
    assert m.moe_block_class == "DeepseekV3MoE"
    assert any("num_nextn_predict_layers" in note for note in m.notes)


def test_deepseek_attention_bias_rejected() -> None:
    with pytest.raises(SpecError, match="attention_bias"):
        model_from_config({**TINY["deepseek_v2"], "attention_bias": True})


def test_sliding_window_only_with_flag_for_qwen() -> None:
    assert model_from_config({**TINY["qwen2"], "sliding_window": 32}).decoder.attention.sliding_window is None
    flagged = {**TINY["qwen2"], "sliding_window": 32, "use_sliding_window": True}
    assert model_from_config(flagged).decoder.attention.sliding_window == 32
    assert model_from_config(TINY["mistral"]).decoder.attention.sliding_window == 32


def test_active_params_of_moe_counts_top_k_experts() -> None:
    m = model_from_config(TINY["mixtral"])
    per_expert = 3 * H * FF
    assert m.num_params - m.num_active_params == 2 * (4 - 2) * per_expert


def test_name_and_source_are_kept() -> None:
    m = model_from_config(TINY["llama"], name="tiny", source="here")
    assert (m.name, m.source, m.model_type) == ("tiny", "here", "llama")


def _small(model_type: str, **kw: object) -> dict[str, object]:
    return {"model_type": model_type, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, **kw}


def test_qwen3_moe_accepts_the_transformers5_expert_key() -> None:
    hub = model_from_config(_small("qwen3_moe", num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32))
    tf5 = model_from_config(_small("qwen3_moe", num_local_experts=8, num_experts_per_tok=2, moe_intermediate_size=32))
    assert hub.num_params == tf5.num_params and tf5.decoder.moe is not None and tf5.decoder.moe.num_experts == 8


def test_deepseek_v2_null_top_k_assumes_six_with_a_note() -> None:
    m = model_from_config({**TINY["deepseek_v2"], "num_experts_per_tok": None})
    assert m.decoder.moe is not None and m.decoder.moe.top_k == 6
    assert any("num_experts_per_tok is null" in note for note in m.notes)


def test_layouts_of_the_added_families() -> None:
    layouts = {mt: model_from_config(_small(mt, head_dim=16)).decoder for mt in
               ("gemma3_text", "glm4", "olmo2", "olmo3", "exaone4", "granite", "starcoder2")}
    assert (layouts["gemma3_text"].norm_layout, layouts["gemma3_text"].norms_per_layer) == ("sandwich", 4)
    assert (layouts["glm4"].norm_layout, layouts["glm4"].norms_per_layer) == ("sandwich", 4)
    assert layouts["olmo2"].norm_layout == layouts["olmo3"].norm_layout == layouts["exaone4"].norm_layout == "post"
    assert layouts["olmo2"].attention.qk_norm_numel == (4 + 2) * 16  # over all heads
    assert layouts["exaone4"].attention.qk_norm_numel == 2 * 16  # per head
    assert layouts["gemma3_text"].norm_weight_fp32 and layouts["olmo2"].norm_weight_fp32
    assert not layouts["granite"].norm_weight_fp32 and layouts["granite"].norm_layout == "pre"
    sc = layouts["starcoder2"]
    assert sc.norm_kind == "layer" and not sc.gated_mlp and sc.tie_embeddings
    assert [lin.name for lin in sc.layer_linears(0)] == ["q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"]
    assert all(lin.bias for lin in sc.layer_linears(0))


def test_glm_fuses_gate_up_and_biases_only_qkv() -> None:
    d = model_from_config(_small("glm", head_dim=16)).decoder
    names = {lin.name: lin for lin in d.layer_linears(0)}
    assert names["gate_up_proj"].d_out == 2 * 128 and names["q_proj"].bias and not names["o_proj"].bias


def test_seed_oss_biases_and_residual_dropout() -> None:
    d = model_from_config(_small("seed_oss", head_dim=16)).decoder
    assert (d.attention.qkv_bias, d.attention.o_bias, d.residual_dropout) == (True, False, True)
    assert not model_from_config(_small("seed_oss", head_dim=16, residual_dropout=0.0)).decoder.residual_dropout


def test_helium_needs_heads_spanning_hidden() -> None:
    with pytest.raises(SpecError, match="o_proj reads hidden_size"):
        model_from_config(_small("helium", head_dim=32))


def test_gemma2_attention_softcap_default_on_and_off_with_null() -> None:
    assert model_from_config(TINY["gemma2"]).decoder.attention.logit_softcap
    assert not model_from_config({**TINY["gemma2"], "attn_logit_softcapping": None}).decoder.attention.logit_softcap


def test_layouts_of_the_parallel_and_layernorm_families() -> None:
    d = {mt: model_from_config(_small(mt)).decoder for mt in
         ("gpt_neox", "phi", "falcon", "cohere", "cohere2", "stablelm", "nemotron", "olmo")}
    assert (d["gpt_neox"].norm_layout, d["gpt_neox"].norms_per_layer, d["gpt_neox"].norm_kind) == ("parallel", 2, "layer")
    assert d["gpt_neox"].attention.num_kv_heads == 4  # GPTNeoXConfig has no num_key_value_heads
    assert [lin.name for lin in d["gpt_neox"].layer_linears(0)] == ["query_key_value", "dense", "dense_h_to_4h",
                                                                    "dense_4h_to_h"]
    assert d["gpt_neox"].attention.value_views_qkv and d["gpt_neox"].attention.rotary_cat
    assert (d["phi"].norm_layout, d["phi"].norms_per_layer, d["phi"].lm_head_bias, d["phi"].act_saved) == \
        ("parallel", 1, True, 4)
    assert (d["falcon"].norm_layout, d["falcon"].norms_per_layer, d["falcon"].attention.num_kv_heads) == ("parallel", 1, 1)
    assert d["falcon"].tie_embeddings and d["falcon"].intermediate_size == 4 * 64
    assert (d["cohere"].norm_kind, d["cohere"].norms_per_layer) == ("layer_nobias", 1)
    assert d["cohere2"].norm_kind == "layer_nobias" and d["cohere2"].tie_embeddings
    assert (d["stablelm"].norm_kind, d["stablelm"].norm_layout) == ("layer", "pre")
    assert not d["nemotron"].gated_mlp and d["nemotron"].act_saved_autocast == (1, 1)
    assert d["olmo"].norm_kind == "none" and d["olmo"].norm_numel_per_norm == 0


def test_falcon_reads_legacy_keys_and_new_architecture() -> None:
    legacy = model_from_config({"model_type": "falcon", "hidden_size": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100})
    assert legacy.decoder.num_layers == 2 and legacy.decoder.attention.num_heads == 4
    new = model_from_config({"model_type": "falcon", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                             "num_kv_heads": 2, "vocab_size": 100, "new_decoder_architecture": True})
    assert (new.decoder.norms_per_layer, new.decoder.attention.num_kv_heads) == (2, 2)
    assert new.decoder.attention.kv_expanded and not new.decoder.attention.sdpa_math_grouped
    qkv = new.decoder.layer_linears(0)[0]
    assert (qkv.name, qkv.d_out) == ("query_key_value", (4 + 2 * 2) * 16)


def test_gpt_oss_sinks_biased_experts_and_router() -> None:
    m = model_from_config(_small("gpt_oss", head_dim=16, num_local_experts=4, num_experts_per_tok=2))
    d = m.decoder
    assert d.moe is not None and d.moe.clamped_swiglu and d.moe_layers == (0, 1)
    assert d.attention.sinks and d.attention.norm_numel() == 4  # one sink logit per head
    lins = {lin.name: lin for lin in d.layer_linears(0)}
    assert lins["gate"].bias and lins["experts.gate_proj"].bias and lins["experts.down_proj"].count == 4
    assert lins["o_proj"].bias  # attention_bias defaults to True
    assert (m.decoder_layer_class, m.moe_block_class) == ("GptOssDecoderLayer", "GptOssMLP")
    h, i, e = 64, 128, 4
    moe = h * e + e + e * (h * 2 * i + 2 * i + i * h + h)
    attn = (h * 64 + 64) + 2 * (h * 32 + 32) + (64 * h + h) + 4
    assert d.layer_numel(0) == moe + attn + 2 * h


def test_moe_families_granitemoe_and_phimoe() -> None:
    g = model_from_config(_small("granitemoe", num_local_experts=4, num_experts_per_tok=2))
    p = model_from_config(_small("phimoe", num_local_experts=4, num_experts_per_tok=2, lm_head_bias=True))
    assert g.moe_block_class == "GraniteMoeMoE" and g.decoder.moe_layers == (0, 1)
    assert p.decoder.norm_kind == "layer" and p.decoder.lm_head_bias and p.moe_block_class == "PhimoeSparseMoeBlock"
