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


def test_deepseek_v3_router_bias_and_mtp_note() -> None:
    m = model_from_config(TINY["deepseek_v3"])
    assert m.decoder.moe is not None and m.decoder.moe.router_bias_numel == 4
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
