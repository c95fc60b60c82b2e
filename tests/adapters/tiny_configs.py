"""Hand-built tiny config.json dicts, one per family, shared by the adapter tests.

Sizes are small and distinct (hidden 64, 4 heads, 2 kv heads, head_dim 16, intermediate 96, vocab 100,
2 layers) so that a wrong dimension shows up in the count. ``EXPECTED`` holds counts worked out by hand.
"""

from __future__ import annotations

from typing import Any

H, L, V, NH, NKV, HD, FF = 64, 2, 100, 4, 2, 16, 96
KV = NKV * HD  # 32

BASE: dict[str, Any] = {
    "hidden_size": H, "num_hidden_layers": L, "vocab_size": V, "num_attention_heads": NH,
    "num_key_value_heads": NKV, "intermediate_size": FF, "max_position_embeddings": 128,
}


def cfg(model_type: str, **extra: Any) -> dict[str, Any]:
    """A tiny config of ``model_type`` with ``extra`` keys on top of ``BASE``."""
    return {"model_type": model_type, **BASE, **extra}


ATTN = H * H + H * KV + H * KV + H * H  # q, k, v, o without bias = 12288
MLP = 3 * H * FF  # gate, up, down = 18432
NORMS = 2 * H
EMB = V * H

TINY: dict[str, dict[str, Any]] = {
    "llama": cfg("llama"),
    "llama_bias": cfg("llama", attention_bias=True, mlp_bias=True),
    "mistral": cfg("mistral", sliding_window=32),
    "qwen2": cfg("qwen2"),
    "qwen3": cfg("qwen3", head_dim=HD),
    "gemma": cfg("gemma", head_dim=HD),
    "gemma2": cfg("gemma2", head_dim=HD),
    "phi3": cfg("phi3"),
    "mixtral": cfg("mixtral", num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": cfg("qwen2_moe", num_hidden_layers=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
                     shared_expert_intermediate_size=48, decoder_sparse_step=2, mlp_only_layers=[3]),
    "qwen3_moe": cfg("qwen3_moe", head_dim=HD, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
                     mlp_only_layers=[0]),
    "olmoe": cfg("olmoe", num_experts=4, num_experts_per_tok=2),
    "deepseek_v2": cfg("deepseek_v2", num_hidden_layers=3, num_key_value_heads=NH, q_lora_rank=None, kv_lora_rank=32,
                       qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=4, n_shared_experts=2,
                       num_experts_per_tok=2, moe_intermediate_size=24, first_k_dense_replace=1, moe_layer_freq=1,
                       n_group=1, topk_group=1, topk_method="greedy"),
    "deepseek_v3": cfg("deepseek_v3", num_hidden_layers=3, num_key_value_heads=NH, q_lora_rank=40, kv_lora_rank=32,
                       qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=4, n_shared_experts=1,
                       num_experts_per_tok=2, moe_intermediate_size=24, first_k_dense_replace=1, n_group=2,
                       topk_group=1, num_nextn_predict_layers=1),
}


def _deepseek_attn(q_lora: int | None) -> int:
    nope, rope, v, kv_lora = 16, 8, 16, 32
    q = H * NH * (nope + rope) if q_lora is None else H * q_lora + q_lora + q_lora * NH * (nope + rope)
    return q + H * (kv_lora + rope) + kv_lora + kv_lora * NH * (nope + v) + NH * v * H


def _deepseek(q_lora: int | None, shared: int, router_bias: bool) -> int:
    attn = _deepseek_attn(q_lora)
    dense = attn + MLP + NORMS
    moe = attn + NORMS + H * 4 + 4 * 3 * H * 24 + 3 * H * (shared * 24) + (4 if router_bias else 0)
    return EMB + dense + 2 * moe + H + EMB


EXPECTED: dict[str, int] = {
    "llama": EMB + L * (ATTN + MLP + NORMS) + H + EMB,
    "llama_bias": EMB + L * (ATTN + (H + KV + KV + H) + MLP + (FF + FF + H) + NORMS) + H + EMB,
    "mistral": EMB + L * (ATTN + MLP + NORMS) + H + EMB,
    "qwen2": EMB + L * (ATTN + (H + KV + KV) + MLP + NORMS) + H + EMB,
    "qwen3": EMB + L * (ATTN + 2 * HD + MLP + NORMS) + H + EMB,
    "gemma": EMB + L * (ATTN + MLP + NORMS) + H,  # tied
    "gemma2": EMB + L * (ATTN + MLP + 4 * H) + H,  # tied, four norms
    "phi3": EMB + L * (ATTN + MLP + NORMS) + H + EMB,
    "mixtral": EMB + L * (ATTN + H * 4 + 4 * MLP + NORMS) + H + EMB,
    # layers 1 (step 2) is MoE, 3 is in mlp_only_layers, 0 and 2 fail the step: dense
    "qwen2_moe": EMB + 4 * (ATTN + (H + KV + KV) + NORMS) + 3 * MLP
    + (H * 4 + 4 * 3 * H * 24 + 3 * H * 48 + H) + H + EMB,
    "qwen3_moe": EMB + L * (ATTN + 2 * HD + NORMS) + MLP + (H * 4 + 4 * 3 * H * 24) + H + EMB,
    "olmoe": EMB + L * (ATTN + H + KV + H * 4 + 4 * MLP + NORMS) + H + EMB,
    "deepseek_v2": _deepseek(None, 2, False),
    "deepseek_v3": _deepseek(40, 1, False),  # e_score_correction_bias is a buffer in transformers 5
}
