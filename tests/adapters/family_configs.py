"""Released configs of the families added beyond Llama/Qwen/Gemma/Mixtral/DeepSeek (shape keys only), and the
exact counts of their transformers 5.24 meta builds (tests/adapters/test_family_parity.py checks both).

Values recalled from each model's Hugging Face ``config.json`` (not re-fetched); every total agrees with the
count its authors publish, to the digits they publish (noted per entry)."""

from __future__ import annotations

from typing import Any

REAL: dict[str, tuple[dict[str, Any], int, str]] = {
    "gemma-3-1b": ({"model_type": "gemma3_text", "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
                        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144,
                        "sliding_window": 512, "query_pre_attn_scalar": 256, "max_position_embeddings": 32768},
                   999_885_952, "google/gemma-3-1b-pt: 1B"),
    "gemma-3-27b-text": ({"model_type": "gemma3_text", "hidden_size": 5376, "intermediate_size": 21504,
                              "num_hidden_layers": 62, "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128,
                              "vocab_size": 262208, "sliding_window": 1024, "query_pre_attn_scalar": 168,
                              "max_position_embeddings": 131072},
                         27_009_346_304, "google/gemma-3-27b-pt text_config: 27B with a 0.4B SigLIP tower"),
    "granite-3.1-8b": ({"model_type": "granite", "hidden_size": 4096, "intermediate_size": 12800, "num_hidden_layers": 40,
                            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 49155, "tie_word_embeddings": True,
                            "embedding_multiplier": 12.0, "residual_multiplier": 0.22, "attention_multiplier": 0.0078125,
                            "logits_scaling": 16.0, "max_position_embeddings": 131072},
                       8_170_848_256, "ibm-granite/granite-3.1-8b-instruct: 8.17B"),
    "olmo-2-13b": ({"model_type": "olmo2", "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
                        "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 100352, "rms_norm_eps": 1e-6,
                        "max_position_embeddings": 4096},
                   13_716_198_400, "allenai/OLMo-2-1124-13B: 13.7B"),
    "smollm3-3b": ({"model_type": "smollm3", "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                        "num_attention_heads": 16, "num_key_value_heads": 4, "vocab_size": 128256, "tie_word_embeddings": True,
                        "max_position_embeddings": 65536},
                   3_075_098_624, "HuggingFaceTB/SmolLM3-3B: 3.08B"),
    "glm-4-9b-0414": ({"model_type": "glm4", "hidden_size": 4096, "intermediate_size": 13696, "num_hidden_layers": 40,
                           "num_attention_heads": 32, "num_key_value_heads": 2, "head_dim": 128, "vocab_size": 151552,
                           "attention_bias": True, "partial_rotary_factor": 0.5, "max_position_embeddings": 32768},
                      9_400_279_040, "THUDM/GLM-4-9B-0414: 9.4B"),
    "ministral-8b": ({"model_type": "ministral", "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                          "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 131072,
                          "sliding_window": 32768, "max_position_embeddings": 32768},
                     8_019_808_256, "mistralai/Ministral-8B-Instruct-2410: 8.02B"),
    "internlm3-8b": ({"model_type": "internlm3", "hidden_size": 4096, "intermediate_size": 10240, "num_hidden_layers": 48,
                          "num_attention_heads": 32, "num_key_value_heads": 2, "head_dim": 128, "vocab_size": 128512,
                          "max_position_embeddings": 32768},
                     8_804_241_408, "internlm/internlm3-8b-instruct: 8.8B"),
    "seed-oss-36b": ({"model_type": "seed_oss", "hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64,
                          "num_attention_heads": 80, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 155136,
                          "attention_bias": True, "attention_out_bias": False, "max_position_embeddings": 524288},
                     36_151_104_512, "ByteDance-Seed/Seed-OSS-36B-Instruct: 36.2B"),
    "exaone-4.0-32b": ({"model_type": "exaone4", "hidden_size": 5120, "intermediate_size": 27392, "num_hidden_layers": 64,
                            "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 102400,
                            "sliding_window": 4096, "max_position_embeddings": 131072},
                       32_003_216_384, "LGAI-EXAONE/EXAONE-4.0-32B: 32.0B"),
    "starcoder2-7b": ({"model_type": "starcoder2", "hidden_size": 4608, "intermediate_size": 18432, "num_hidden_layers": 32,
                           "num_attention_heads": 36, "num_key_value_heads": 4, "vocab_size": 49152, "use_bias": True,
                           "sliding_window": 4096, "max_position_embeddings": 16384, "hidden_act": "gelu_pytorch_tanh"},
                      7_173_923_840, "bigcode/starcoder2-7b: 7.17B"),
    "qwen3-30b-a3b-hub-keys": ({"model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144,
                                    "moe_intermediate_size": 768, "num_hidden_layers": 48, "num_attention_heads": 32,
                                    "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936, "num_experts": 128,
                                    "num_experts_per_tok": 8, "max_position_embeddings": 40960},
                               30_532_122_624, "Qwen/Qwen3-30B-A3B: 30.5B (Hub key num_experts)"),
}
"""name -> (config, exact count of the transformers meta build, published figure)."""

DEFAULT_FAMILIES = ("qwen3_moe", "deepseek_v2", "deepseek_v3", "gemma3_text", "granite", "smollm3", "internlm3",
                    "helium", "seed_oss", "olmo2", "olmo3", "exaone4", "glm", "glm4", "starcoder2")
"""Families whose transformers default config (``AutoConfig.for_model``) must parse and match the meta build.
(``ministral``'s default has head_dim None, which transformers itself cannot build.)"""
