"""The cross-validation cases: tiny configs the analytical model is held to against the trace.

Tiny, but with the shape ratios of the real families (Llama MLP ~2.75 h, GQA 4:1, Gemma MQA + head_dim
256-like, Mixtral top-2 of 4, Qwen2-MoE fine-grained experts + shared expert, CLIP + ConvNeXt towers at
low resolution). Two vocabularies: 4000 (the loss dominates the backward, as in most real runs) and 1000
(the layers' backward dominates). Shared by tests/torch/test_crossval.py and benchmarks/crossval.py.
"""

from __future__ import annotations

from typing import Any

LLAMA = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 2,
         "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 4000, "max_position_embeddings": 4096, "pad_token_id": 0}
LLAMA_SV = dict(LLAMA, vocab_size=1000)
QWEN2 = {"model_type": "qwen2", "hidden_size": 256, "intermediate_size": 896, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 6000, "max_position_embeddings": 4096,
         "tie_word_embeddings": True}
GEMMA = {"model_type": "gemma", "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 64, "vocab_size": 8000,
         "max_position_embeddings": 4096, "hidden_act": "gelu_pytorch_tanh"}
GEMMA_SV = dict(GEMMA, vocab_size=1000)
MIXTRAL = {"model_type": "mixtral", "hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 2,
           "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 4000, "num_local_experts": 4,
           "num_experts_per_tok": 2, "max_position_embeddings": 4096}
MIXTRAL_SV = dict(MIXTRAL, vocab_size=1000)
QWEN2MOE = {"model_type": "qwen2_moe", "hidden_size": 256, "intermediate_size": 704, "moe_intermediate_size": 128,
            "shared_expert_intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 4000, "num_experts": 8, "num_experts_per_tok": 4,
            "max_position_embeddings": 4096}
QWEN2MOE_SV = dict(QWEN2MOE, vocab_size=1000)
QWEN3MOE = {"model_type": "qwen3_moe", "hidden_size": 256, "intermediate_size": 704, "moe_intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
            "vocab_size": 4000, "num_experts": 8, "num_experts_per_tok": 4, "max_position_embeddings": 4096}
DEEPSEEK = {"model_type": "deepseek_v2", "hidden_size": 256, "intermediate_size": 704, "moe_intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 4000,
            "kv_lora_rank": 64, "q_lora_rank": None, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16,
            "v_head_dim": 32, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1,
            "first_k_dense_replace": 1, "max_position_embeddings": 4096, "topk_method": "greedy"}
# Llama-like families with other norm placements, q/k norms, biases, dropout (tiny, same Llama ratios)
_SMALL = {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 2, "num_attention_heads": 8,
          "num_key_value_heads": 2, "vocab_size": 4000, "max_position_embeddings": 4096, "pad_token_id": 0}
GEMMA3 = {"model_type": "gemma3_text", "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 64, "vocab_size": 8000,
          "max_position_embeddings": 4096, "query_pre_attn_scalar": 64, "sliding_window": 4096}
GEMMA2 = dict(GEMMA, model_type="gemma2", query_pre_attn_scalar=64, sliding_window=4096)
OLMO2 = dict(_SMALL, model_type="olmo2")
EXAONE4 = dict(_SMALL, model_type="exaone4", head_dim=32, sliding_window=4096)
GLM4 = dict(_SMALL, model_type="glm4", head_dim=32, partial_rotary_factor=0.5)
GRANITE = dict(_SMALL, model_type="granite", embedding_multiplier=12.0, residual_multiplier=0.22,
               attention_multiplier=0.0078125, logits_scaling=8.0, tie_word_embeddings=True)
SMOLLM3 = dict(_SMALL, model_type="smollm3", no_rope_layer_interval=2, tie_word_embeddings=True)
HELIUM = dict(_SMALL, model_type="helium", head_dim=32)
STARCODER2 = dict(_SMALL, model_type="starcoder2", intermediate_size=1024, hidden_act="gelu_pytorch_tanh")
SEED_OSS = dict(_SMALL, model_type="seed_oss", head_dim=32, attention_dropout=0.0, residual_dropout=0.1)
# parallel attention + MLP blocks, LayerNorm with bias, plain GELU MLPs (decomposed gelu_new), cat-built partial
# rotary q/k; GPT-NeoX's fused query_key_value whose value view keeps the whole output
PHI = dict(_SMALL, model_type="phi", intermediate_size=1024, num_key_value_heads=8, hidden_act="gelu_new",
           partial_rotary_factor=0.5, resid_pdrop=0.1)
PHI_GQA = dict(PHI, num_key_value_heads=2)
GPT_NEOX = dict(_SMALL, model_type="gpt_neox", intermediate_size=1024, rotary_pct=0.25)
# GPT-OSS: attention sinks (eager only: transformers has no SDPA path for them), biased experts with the clamped
# SwiGLU, top-4 of 8, alternating sliding/full layers
GPT_OSS = dict(_SMALL, model_type="gpt_oss", head_dim=32, intermediate_size=128, num_local_experts=8,
               num_experts_per_tok=4, sliding_window=128)
# CohereLayerNorm (fp32, no bias) feeding attention and MLP in parallel; OLMo-1's non-parametric LayerNorm; StableLM
# per-head q/k LayerNorms + parallel residual; Nemotron's LayerNorm1P + ReLU² MLP; Granite-MoE; Phi-3.5-MoE's
# LayerNorm + sparsemixer; Falcon (multi-query SDPA on the math kernel; new architecture with expanded K/V)
COHERE = dict(_SMALL, model_type="cohere")
COHERE2 = dict(_SMALL, model_type="cohere2", sliding_window=4096)
OLMO = dict(_SMALL, model_type="olmo")
STABLELM = dict(_SMALL, model_type="stablelm", partial_rotary_factor=0.25, qk_layernorm=True,
                use_parallel_residual=True, use_qkv_bias=True)
NEMOTRON = dict(_SMALL, model_type="nemotron", partial_rotary_factor=0.5)
GRANITEMOE = dict(_SMALL, model_type="granitemoe", intermediate_size=128, num_local_experts=8, num_experts_per_tok=4,
                  embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.0078125, logits_scaling=8.0)
PHIMOE = dict(_SMALL, model_type="phimoe", intermediate_size=128, num_local_experts=8, num_experts_per_tok=2)
FALCON = {"model_type": "falcon", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 8, "vocab_size": 4000,
          "max_position_embeddings": 4096, "pad_token_id": 0}
FALCON_NEW = dict(FALCON, new_decoder_architecture=True, num_kv_heads=2)
# Llama-4 text: every token through every expert (repeat + bmm), a shared expert, L2 q/k norms
LLAMA4 = dict(_SMALL, model_type="llama4_text", intermediate_size=128, intermediate_size_mlp=704, head_dim=32,
              num_local_experts=4, num_experts_per_tok=1)

TOWERS: dict[str, dict[str, Any]] = {
    "tiny-clip": {"model_type": "clip_vision_model", "hidden_size": 128, "intermediate_size": 512,
                  "num_hidden_layers": 2, "num_attention_heads": 4, "num_channels": 3, "image_size": 112,
                  "patch_size": 14},
    "tiny-convnext": {"model_type": "convnext", "num_channels": 3, "patch_size": 4, "depths": [1, 1, 2, 1],
                      "hidden_sizes": [32, 64, 128, 256], "layer_scale_init_value": 1e-6, "image_size": 64},
}
_MM = {"mm_vision_tower": "tiny-clip", "mm_hidden_size": 128, "mm_projector_type": "mlp2x_gelu",
       "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch"}
_AUX = {"mm_vision_tower_aux": "tiny-convnext", "image_size_aux": 256, "mm_hidden_size_aux": 480}
MGM = dict(GEMMA, model_type="mgm_gemma", **_MM, **_AUX)
MGM_HD = dict(MGM, image_grid=2, image_global=True, image_size_aux=512)
MGM_MIXTRAL = dict(MIXTRAL, model_type="mgm_mixtral", **_MM, **_AUX)
LLAVA = dict(LLAMA, model_type="llava_llama", **_MM)
LLAVA_HF = {"model_type": "llava", "text_config": dict(LLAMA),
            "vision_config": {"model_type": "clip_vision_model", "hidden_size": 128, "intermediate_size": 512,
                              "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 112, "patch_size": 14},
            "image_token_index": 3999, "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
            "image_seq_length": 64}
# Qwen2-VL / Qwen2.5-VL: tiny packed towers on 224 x 168 images (16 x 12 patches, 48 LLM tokens per image;
# Qwen2.5-VL: 112 px windows of unequal size on this grid, full attention in layers 1 and 3)
_QWEN_VL_TEXT = dict(QWEN2, rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]})
_QWEN_VL_IDS = {"image_token_id": 5990, "video_token_id": 5991, "vision_start_token_id": 5992,
                "vramplan_image_size": [224, 168]}
QWEN2_VL = {"model_type": "qwen2_vl", "text_config": dict(_QWEN_VL_TEXT, model_type="qwen2_vl_text"),
            "vision_config": {"depth": 2, "embed_dim": 128, "hidden_size": 256, "num_heads": 4, "mlp_ratio": 4,
                              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}, **_QWEN_VL_IDS}
QWEN2_5_VL = {"model_type": "qwen2_5_vl", "text_config": dict(_QWEN_VL_TEXT, model_type="qwen2_5_vl_text"),
              "vision_config": {"depth": 4, "hidden_size": 128, "intermediate_size": 256, "out_hidden_size": 256,
                                "num_heads": 4, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                                "window_size": 112, "fullatt_block_indexes": [1, 3]}, **_QWEN_VL_IDS}
# Gemma 3: tiny SigLIP (no head) on 112 px images of 14 px patches (8 x 8 = 64 positions) average-pooled 2 x 2 to
# 16 LLM tokens, RMSNorm + bias-free projection, Gemma-3 text decoder (sliding + full layers)
GEMMA3_VLM = {"model_type": "gemma3", "text_config": dict(GEMMA3, num_key_value_heads=2),
              "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 128, "intermediate_size": 512,
                                "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 112, "patch_size": 14,
                                "vision_use_head": False},
              "mm_tokens_per_image": 16, "image_token_index": 7990, "boi_token_index": 7991, "eoi_token_index": 7992}
# LLaVA-NeXT: the llava-hf tiny tower (112 px, 8 x 8 patches) with anyres pinpoints of 112-px tiles; a 224 x 168
# (w x h) image: best pinpoint 224 x 224 -> base + 4 tiles = 5 passes, 16 x 16 grid unpadded to 12 rows + 12 newlines
# = 64 + 192 + 12 = 268 LLM tokens
LLAVA_NEXT = {**LLAVA_HF, "model_type": "llava_next",
              "image_grid_pinpoints": [[112, 224], [224, 112], [224, 224], [336, 112], [112, 336]],
              "vramplan_image_size": [224, 168]}
LLAVA_NEXT.pop("image_seq_length")

PARALLEL_KEYS = ("engine", "zero", "offload_optimizer", "offload_param", "fsdp_sharding")


def scenario(**kw: Any) -> dict[str, Any]:
    """A scenario dict: single GPU, bf16-mixed, micro-batch 2 x 512 tokens, no checkpointing, flash; ``kw``
    overrides train keys, parallel keys (``PARALLEL_KEYS``) and ``gpus`` (GPUs per node)."""
    train = {"method": "full", "precision": "bf16-mixed", "micro_batch": 2, "seq_len": 512, "grad_ckpt": "none",
             "attention": "flash"}
    par: dict[str, Any] = {"engine": "single"}
    hw: dict[str, Any] = {"gpu": "a100-80g", "gpus_per_node": 1}
    for key, value in kw.items():
        if key in PARALLEL_KEYS:
            par[key] = value
        elif key == "gpus":
            hw["gpus_per_node"] = value
        else:
            train[key] = value
    return {"train": train, "hardware": hw, "parallel": par}


S = scenario
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    # dense decoders: precision, attention, batch and sequence sweeps, checkpointing
    ("llama-single-mixed", LLAMA, S()),
    ("llama-single-bf16", LLAMA, S(precision="bf16-pure")),
    ("llama-fp32", LLAMA_SV, S(precision="fp32")),
    ("llama-ckpt", LLAMA, S(grad_ckpt="full")),
    ("llama-sdpa", LLAMA, S(attention="sdpa")),
    ("llama-eager", LLAMA, S(attention="eager", seq_len=256)),
    ("llama-b1-s1024", LLAMA, S(micro_batch=1, seq_len=1024)),
    ("llama-b4-s256", LLAMA, S(micro_batch=4, seq_len=256)),
    ("llama-b8-s256-ckpt", LLAMA, S(micro_batch=8, seq_len=256, grad_ckpt="full")),
    ("llama-sv-bf16", LLAMA_SV, S(precision="bf16-pure")),
    ("llama-sv-ckpt-b4", LLAMA_SV, S(grad_ckpt="full", micro_batch=4)),
    ("llama-sv-sdpa-ckpt", LLAMA_SV, S(attention="sdpa", grad_ckpt="full", precision="bf16-pure")),
    ("llama-sv-eager", LLAMA_SV, S(attention="eager", seq_len=256)),
    ("llama-ga2", LLAMA_SV, S(grad_accum=2)),
    ("qwen2-tied-ckpt", QWEN2, S(grad_ckpt="full")),
    ("gemma", GEMMA, S()),
    ("gemma-sv-eager-ckpt", GEMMA_SV, S(attention="eager", seq_len=256, grad_ckpt="full")),
    # Llama-like families: sandwich norms (Gemma-2/3, GLM-4), post-norms (OLMo-2, EXAONE-4), fp32 norm
    # weights (Gemma, Helium, OLMo-2), q/k norms per head and over all heads, residual dropout (Seed-OSS)
    ("gemma3-mixed", GEMMA3, S()),
    ("gemma3-bf16-ckpt", GEMMA3, S(precision="bf16-pure", grad_ckpt="full")),
    ("gemma2-bf16", GEMMA2, S(precision="bf16-pure", attention="eager", seq_len=256)),
    ("olmo2-mixed", OLMO2, S()),
    ("olmo2-bf16", OLMO2, S(precision="bf16-pure")),
    ("olmo2-lora", OLMO2, S(method="lora")),
    ("exaone4-bf16", EXAONE4, S(precision="bf16-pure")),
    ("glm4-bf16", GLM4, S(precision="bf16-pure")),
    ("glm4-mixed-ckpt", GLM4, S(grad_ckpt="full")),
    ("granite-bf16", GRANITE, S(precision="bf16-pure")),
    ("smollm3-bf16", SMOLLM3, S(precision="bf16-pure")),
    ("helium-mixed", HELIUM, S()),
    ("seed-oss-bf16", SEED_OSS, S(precision="bf16-pure")),
    # LayerNorm with bias, plain GELU MLP with biases (StarCoder2)
    ("starcoder2-bf16", STARCODER2, S(precision="bf16-pure")),
    ("starcoder2-mixed", STARCODER2, S()),
    ("starcoder2-lora", STARCODER2, S(method="lora")),
    ("starcoder2-sv-ckpt", dict(STARCODER2, vocab_size=1000), S(grad_ckpt="full", precision="bf16-pure")),
    # parallel blocks: one LayerNorm feeding attention and a gelu_new MLP (Phi-2)
    ("phi-bf16", PHI, S(precision="bf16-pure")),
    ("phi-mixed", PHI, S()),
    ("phi-lora", PHI, S(method="lora")),
    ("phi-gqa-sdpa-bf16", PHI_GQA, S(precision="bf16-pure", attention="sdpa")),
    ("phi-sv-eager", dict(PHI, vocab_size=1000), S(attention="eager", seq_len=256)),
    # GPT-OSS (eager attention with sinks; MoE with router/expert biases and the clamped SwiGLU)
    ("gpt-oss-eager-bf16", GPT_OSS, S(precision="bf16-pure", attention="eager", seq_len=256)),
    ("gpt-oss-eager-mixed", GPT_OSS, S(attention="eager", seq_len=256)),
    ("gpt-oss-eager-mixed-ckpt", GPT_OSS, S(attention="eager", seq_len=256, grad_ckpt="full")),
    ("gpt-oss-eager-lora", GPT_OSS, S(attention="eager", seq_len=256, method="lora")),
    ("gpt-oss-eager-zero2", GPT_OSS, S(attention="eager", seq_len=256, engine="deepspeed", zero=2, gpus=4)),
    # LayerNorm variants, parallel residuals, ReLU² (Cohere, OLMo-1, StableLM, Nemotron), MoE (Granite-MoE, PhiMoE)
    ("cohere-bf16", COHERE, S(precision="bf16-pure")),
    ("cohere-mixed", COHERE, S()),
    ("cohere-lora", COHERE, S(method="lora")),
    ("cohere2-sdpa-ckpt", COHERE2, S(attention="sdpa", grad_ckpt="full")),
    ("olmo-bf16", OLMO, S(precision="bf16-pure")),
    ("olmo-lora", OLMO, S(method="lora")),
    ("stablelm-qknorm-bf16", STABLELM, S(precision="bf16-pure")),
    ("stablelm-qknorm-mixed", STABLELM, S()),
    ("nemotron-bf16", NEMOTRON, S(precision="bf16-pure")),
    ("nemotron-mixed", NEMOTRON, S()),
    ("nemotron-lora", NEMOTRON, S(method="lora")),
    ("granitemoe-mixed", GRANITEMOE, S()),
    ("granitemoe-ckpt-zero2", GRANITEMOE, S(grad_ckpt="full", engine="deepspeed", zero=2, gpus=4)),
    ("phimoe-bf16-ckpt", PHIMOE, S(precision="bf16-pure", grad_ckpt="full")),
    ("phimoe-lora", PHIMOE, S(method="lora")),
    # optimizers: foreach temporaries, fused, no state, 8-bit states; optimizer-bound peaks
    ("opt-bound-foreach", LLAMA, S(micro_batch=1, seq_len=64)),
    ("opt-bound-fused", LLAMA, S(micro_batch=1, seq_len=64, optimizer="adamw-fused")),
    ("opt-sgd", LLAMA, S(optimizer="sgd")),
    ("opt-adamw-8bit", LLAMA, S(optimizer="adamw-8bit", precision="bf16-pure")),
    # LoRA (frozen base)
    ("lora", LLAMA, S(method="lora")),
    ("lora-ckpt", LLAMA, S(method="lora", grad_ckpt="full")),
    ("lora-sv-b4", LLAMA_SV, S(method="lora", micro_batch=4)),
    ("lora-zero2", LLAMA, S(method="lora", engine="deepspeed", zero=2, gpus=4)),
    # engines and world sizes
    ("ddp-4", LLAMA, S(engine="ddp", gpus=4)),
    ("ddp-2-sv-ckpt", LLAMA_SV, S(engine="ddp", gpus=2, grad_ckpt="full")),
    ("zero1-4", LLAMA, S(engine="deepspeed", zero=1, gpus=4)),
    ("zero2-8-ckpt", LLAMA, S(engine="deepspeed", zero=2, gpus=8, grad_ckpt="full")),
    ("zero2-4-sv-ckpt", LLAMA_SV, S(engine="deepspeed", zero=2, gpus=4, grad_ckpt="full", micro_batch=4)),
    ("zero2-offload", LLAMA, S(engine="deepspeed", zero=2, gpus=4, offload_optimizer="cpu")),
    ("zero2-ga2", LLAMA_SV, S(grad_accum=2, engine="deepspeed", zero=2, gpus=4)),
    ("zero3-4", LLAMA, S(engine="deepspeed", zero=3, gpus=4)),
    ("zero3-8-sv", LLAMA_SV, S(engine="deepspeed", zero=3, gpus=8)),
    ("fsdp2-4", LLAMA, S(engine="fsdp2", gpus=4)),
    ("fsdp2-8-ckpt", LLAMA, S(engine="fsdp2", gpus=8, grad_ckpt="full")),
    ("fsdp2-4-sv-ckpt", LLAMA_SV, S(engine="fsdp2", gpus=4, grad_ckpt="full")),
    ("fsdp2-2-sv-bf16", LLAMA_SV, S(engine="fsdp2", gpus=2, precision="bf16-pure")),
    # MoE
    ("mixtral-mixed", MIXTRAL, S()),
    ("mixtral-mixed-ckpt", MIXTRAL, S(grad_ckpt="full")),
    ("mixtral-bf16", MIXTRAL, S(precision="bf16-pure")),
    ("mixtral-sv-bf16-ckpt", MIXTRAL_SV, S(grad_ckpt="full", precision="bf16-pure")),
    ("mixtral-zero2-sv", MIXTRAL_SV, S(engine="deepspeed", zero=2, gpus=4)),
    ("mixtral-zero3-ckpt", MIXTRAL, S(engine="deepspeed", zero=3, gpus=4, grad_ckpt="full")),
    ("mixtral-fsdp2-2", MIXTRAL, S(engine="fsdp2", gpus=2)),
    ("qwen2moe-bf16", QWEN2MOE, S(precision="bf16-pure")),
    ("qwen2moe-sv-bf16-ckpt", QWEN2MOE_SV, S(precision="bf16-pure", grad_ckpt="full")),
    ("qwen3moe-qknorm-zero2", QWEN3MOE, S(engine="deepspeed", zero=2, gpus=4)),
    ("deepseek-mla-zero2", DEEPSEEK, S(engine="deepspeed", zero=2, gpus=4)),
    ("deepseek-mla-bf16-ckpt", dict(DEEPSEEK, vocab_size=1000), S(precision="bf16-pure", grad_ckpt="full")),
    # vision-language: LLaVA (transformers and original), MGM (2B-like, HD, MoE), frozen / trained parts
    ("llava-hf", LLAVA_HF, S(seq_len=256)),
    ("llava-hf-tower-trains", LLAVA_HF, S(seq_len=256, trainable=["llm", "projector", "vision"])),
    ("llava-orig-zero2-ckpt", LLAVA, S(seq_len=256, grad_ckpt="full", engine="deepspeed", zero=2, gpus=4)),
    ("llava-orig-lora-zero2", LLAVA, S(seq_len=256, method="lora", engine="deepspeed", zero=2, gpus=4)),
    ("mgm-stage2-zero2", MGM, S(seq_len=256, grad_ckpt="full", engine="deepspeed", zero=2, gpus=4)),
    ("mgm-stage1-projector-only", MGM, S(seq_len=256, method="freeze", trainable=["projector"], grad_ckpt="full",
                                         engine="deepspeed", zero=2, gpus=4)),
    ("mgm-hd-zero2", MGM_HD, S(seq_len=512, micro_batch=1, grad_ckpt="full", engine="deepspeed", zero=2, gpus=4)),
    ("mgm-single-mixed", MGM, S(seq_len=256)),
    ("mgm-mixtral-zero3", MGM_MIXTRAL, S(seq_len=256, grad_ckpt="full", engine="deepspeed", zero=3, gpus=4)),
    # Qwen-VL: packed dynamic-resolution towers (varlen attention), merger as the trainable connector
    ("qwen2vl-mixed", QWEN2_VL, S(seq_len=256)),
    ("qwen2vl-lora", QWEN2_VL, S(seq_len=256, method="lora")),
    ("qwen2vl-tower-trains-bf16", QWEN2_VL, S(seq_len=256, precision="bf16-pure",
                                              trainable=["llm", "projector", "vision"])),
    ("qwen25vl-mixed", QWEN2_5_VL, S(seq_len=256)),
    ("qwen25vl-tower-trains-eager", QWEN2_5_VL, S(seq_len=256, precision="bf16-pure", attention="eager",
                                                  trainable=["llm", "projector", "vision"])),
    ("qwen25vl-zero2-ckpt", QWEN2_5_VL, S(seq_len=256, grad_ckpt="full", engine="deepspeed", zero=2, gpus=4)),
    # Gemma 3: SigLIP + avg-pool projector; sdpa/eager build the 4-D mask with bidirectional image blocks
    ("gemma3vl-flash", GEMMA3_VLM, S(seq_len=256)),
    ("gemma3vl-sdpa", GEMMA3_VLM, S(seq_len=256, attention="sdpa")),
    ("gemma3vl-tower-trains-eager-bf16", GEMMA3_VLM, S(seq_len=256, precision="bf16-pure", attention="eager",
                                                       trainable=["llm", "projector", "vision"])),
    ("gemma3vl-8-images-tower-trains-bf16", GEMMA3_VLM, S(seq_len=256, images_per_sample=8, precision="bf16-pure",
                                                          trainable=["llm", "projector", "vision"])),
    ("gemma3vl-8-images-stage1-projector-only", GEMMA3_VLM, S(seq_len=256, images_per_sample=8, method="freeze",
                                                              trainable=["projector"], attention="sdpa")),
    ("gemma3vl-lora-zero2-ckpt", GEMMA3_VLM, S(seq_len=256, method="lora", attention="sdpa", grad_ckpt="full",
                                               engine="deepspeed", zero=2, gpus=4)),
    # LLaVA-NeXT: anyres base view + tiles through the tower and projector, unpadded, image_newline per row
    ("llava-next-mixed", LLAVA_NEXT, S(seq_len=512)),
    ("llava-next-stage1-projector-only", LLAVA_NEXT, S(seq_len=512, method="freeze", trainable=["projector"])),
    ("llava-next-tower-trains-bf16", LLAVA_NEXT, S(seq_len=512, precision="bf16-pure",
                                                   trainable=["llm", "projector", "vision"])),
    ("llava-next-lora-zero2-ckpt", LLAVA_NEXT, S(seq_len=512, method="lora", grad_ckpt="full", engine="deepspeed",
                                                 zero=2, gpus=4)),
    # GPT-NeoX (layers of GPTNeoXLayer), Falcon (transformer.h; SDPA and eager only: with flash the trace runs
    # Falcon's own SDPA call where GPUs run FalconFlashAttention2), Llama-4 (experts as torch.bmm)
    ("gpt-neox-bf16", GPT_NEOX, S(precision="bf16-pure")),
    ("gpt-neox-mixed", GPT_NEOX, S()),
    ("gpt-neox-lora", GPT_NEOX, S(method="lora")),
    ("gpt-neox-qlora", GPT_NEOX, S(method="qlora")),
    ("gpt-neox-sdpa-ckpt", GPT_NEOX, S(attention="sdpa", grad_ckpt="full")),
    ("falcon-mqa-sdpa-bf16", FALCON, S(precision="bf16-pure", attention="sdpa")),
    ("falcon-mqa-sdpa-mixed", FALCON, S(attention="sdpa")),
    ("falcon-mqa-sdpa-lora", FALCON, S(attention="sdpa", method="lora")),
    ("falcon-eager", FALCON, S(attention="eager", seq_len=256)),
    ("falcon-new-arch-sdpa-bf16", FALCON_NEW, S(attention="sdpa", precision="bf16-pure")),
    ("llama4-bf16", LLAMA4, S(precision="bf16-pure")),
    ("llama4-mixed", LLAMA4, S()),
    ("llama4-lora", LLAMA4, S(method="lora")),
    ("llama4-interleaved-mixed-ckpt", dict(LLAMA4, num_hidden_layers=4, interleave_moe_layer_step=2), S(grad_ckpt="full")),
]
"""(name, HF config dict, scenario dict without the model)."""


