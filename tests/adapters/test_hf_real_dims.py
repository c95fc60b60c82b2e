"""Families without a preset, at their released dimensions, against the counts their authors publish."""

from __future__ import annotations

from vramplan.adapters import model_from_config


def test_deepseek_v3_671b_total_37b_active() -> None:
    """DeepSeek-V3 config.json; the 671B total excludes the 14B multi-token-prediction module (685B on the Hub)."""
    config = dict(model_type="deepseek_v3", hidden_size=7168, num_hidden_layers=61, vocab_size=129280,
                  num_attention_heads=128, num_key_value_heads=128, intermediate_size=18432, q_lora_rank=1536,
                  kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, n_routed_experts=256,
                  n_shared_experts=1, num_experts_per_tok=8, moe_intermediate_size=2048, first_k_dense_replace=3,
                  moe_layer_freq=1, num_nextn_predict_layers=1)
    spec = model_from_config(config)
    # transformers 5 meta build of this config; DeepSeek's own code also holds e_score_correction_bias (256 per
    # MoE layer, 58 layers = 14_848) as a parameter, transformers 5 as a buffer
    assert spec.num_params == 671_026_404_352 == 671_026_419_200 - 58 * 256
    assert round(spec.num_active_params / 1e9) == 38  # DeepSeek: "37B activated" (without the input embedding)
    assert round((spec.num_active_params - spec.decoder.embedding_numel) / 1e9) == 37


def test_gemma2_2b() -> None:
    config = dict(model_type="gemma2", hidden_size=2304, num_hidden_layers=26, vocab_size=256000,
                  num_attention_heads=8, num_key_value_heads=4, head_dim=256, intermediate_size=9216)
    assert model_from_config(config).num_params == 2_614_341_888  # HF safetensors total of google/gemma-2-2b


def test_phi3_mini() -> None:
    config = dict(model_type="phi3", hidden_size=3072, num_hidden_layers=32, vocab_size=32064,
                  num_attention_heads=32, num_key_value_heads=32, intermediate_size=8192)
    assert round(model_from_config(config).num_params / 1e7) == 382  # "3.8B" / 3.82B


def test_qwen3_8b() -> None:
    config = dict(model_type="qwen3", hidden_size=4096, num_hidden_layers=36, vocab_size=151936, head_dim=128,
                  num_attention_heads=32, num_key_value_heads=8, intermediate_size=12288)
    assert round(model_from_config(config).num_params / 1e7) == 819  # Qwen3-8B card: 8.2B


def test_qwen15_moe_a27b() -> None:
    config = dict(model_type="qwen2_moe", hidden_size=2048, num_hidden_layers=24, vocab_size=151936,
                  num_attention_heads=16, num_key_value_heads=16, intermediate_size=5632, moe_intermediate_size=1408,
                  shared_expert_intermediate_size=5632, num_experts=60, num_experts_per_tok=4)
    spec = model_from_config(config)
    assert round(spec.num_params / 1e8) == 143  # card: 14.3B total
    assert round(spec.num_active_params / 1e8) == 27  # card: 2.7B activated
