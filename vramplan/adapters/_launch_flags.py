"""Flag tables for launch scripts: launcher options and the training flags vramplan knows.

Owns which launcher options take a value (so the training script is found after them) and the set of
training-script flags that are *known* (HF ``TrainingArguments`` and the MGM / LLaVA ``ModelArguments`` /
``DataArguments`` / ``TrainingArguments`` in ``mgm/train/train.py`` and ``llava/train/train.py``).
Any other flag is listed as unknown, never fatal. Pure data; imports nothing.
"""

from __future__ import annotations

DEEPSPEED_VALUE_OPTIONS = frozenset({
    "hostfile", "h", "include", "i", "exclude", "e", "num_nodes", "min_elastic_nodes", "max_elastic_nodes",
    "num_gpus", "num_accelerators", "master_port", "master_addr", "node_rank", "launcher", "launcher_args",
    "enable_each_rank_log", "autotuning", "bind_core_list", "ssh_port", "comment", "venv_script",
})
DEEPSPEED_FLAG_OPTIONS = frozenset({
    "module", "m", "no_python", "no_local_rank", "no_ssh", "no_ssh_check", "force_multi", "save_pid",
    "elastic_training", "bind_cores_to_rank",
})
DEEPSPEED_SHORT = {"H": "hostfile", "i": "include", "e": "exclude", "m": "module"}

TORCHRUN_VALUE_OPTIONS = frozenset({
    "nnodes", "nproc_per_node", "node_rank", "master_addr", "master_port", "rdzv_backend", "rdzv_endpoint",
    "rdzv_id", "rdzv_conf", "max_restarts", "monitor_interval", "start_method", "role", "log_dir", "r",
    "redirects", "t", "tee", "local_addr", "logs_specs", "local_ranks_filter", "rdzv_timeout",
})
TORCHRUN_FLAG_OPTIONS = frozenset({"standalone", "module", "m", "no_python", "run_path", "use_env"})

ACCELERATE_FLAG_OPTIONS = frozenset({
    "cpu", "multi_gpu", "tpu", "ipex", "use_xpu", "use_deepspeed", "use_fsdp", "use_megatron_lm", "module", "m",
    "no_python", "debug", "quiet", "q", "same_network", "dynamo_use_fullgraph", "dynamo_use_dynamic",
    "enable_cpu_affinity", "tpu_use_cluster", "tpu_use_sudo", "downcast_bf16",
})
"""Every other ``accelerate launch`` option takes a value."""

PYTHON_VALUE_OPTIONS = frozenset({"W", "X", "c"})

HF_TRAINING_FLAGS = frozenset({
    # transformers TrainingArguments (the commonly used ones; unknown flags are only listed, never fatal)
    "output_dir", "overwrite_output_dir", "do_train", "do_eval", "do_predict", "eval_strategy",
    "evaluation_strategy", "prediction_loss_only", "per_device_train_batch_size", "per_device_eval_batch_size",
    "per_gpu_train_batch_size", "per_gpu_eval_batch_size", "gradient_accumulation_steps", "eval_accumulation_steps",
    "eval_delay", "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
    "num_train_epochs", "max_steps", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_ratio", "warmup_steps",
    "log_level", "log_level_replica", "logging_dir", "logging_strategy", "logging_first_step", "logging_steps",
    "logging_nan_inf_filter", "save_strategy", "save_steps", "save_total_limit", "save_safetensors",
    "save_on_each_node", "save_only_model", "no_cuda", "use_cpu", "seed", "data_seed", "jit_mode_eval", "bf16",
    "fp16", "fp16_opt_level", "half_precision_backend", "fp16_backend", "bf16_full_eval", "fp16_full_eval", "tf32",
    "local_rank", "ddp_backend", "dataloader_drop_last", "eval_steps", "dataloader_num_workers",
    "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor", "past_index",
    "run_name", "disable_tqdm", "remove_unused_columns", "label_names", "load_best_model_at_end",
    "metric_for_best_model", "greater_is_better", "ignore_data_skip", "fsdp", "fsdp_config",
    "fsdp_min_num_params", "fsdp_transformer_layer_cls_to_wrap", "deepspeed", "label_smoothing_factor", "optim",
    "optim_args", "adafactor", "group_by_length", "length_column_name", "report_to",
    "ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_timeout",
    "skip_memory_metrics", "push_to_hub", "resume_from_checkpoint", "hub_model_id", "hub_strategy", "hub_token",
    "hub_private_repo", "gradient_checkpointing", "gradient_checkpointing_kwargs", "include_inputs_for_metrics",
    "auto_find_batch_size", "full_determinism", "torch_compile", "torch_compile_backend", "torch_compile_mode",
    "neftune_noise_alpha", "use_liger_kernel", "liger_kernel_config", "average_tokens_across_devices",
    "torch_empty_cache_steps", "batch_eval_metrics", "eval_on_start", "include_tokens_per_second",
    "include_num_input_tokens_seen", "accelerator_config", "dispatch_batches", "split_batches", "ray_scope",
    "cache_dir", "deepspeed_config",
    # common ModelArguments / DataArguments of HF example scripts
    "model_name_or_path", "model_revision", "trust_remote_code", "torch_dtype", "attn_implementation",
    "use_flash_attn", "flash_attn", "use_flash_attention_2", "data_path", "dataset", "dataset_name",
    "max_seq_length", "max_length", "cutoff_len", "seq_length", "tokenizer_name", "config_name",
    "low_cpu_mem_usage",
})

MGM_LLAVA_FLAGS = frozenset({
    # ModelArguments (mgm/train/train.py, llava/train/train.py)
    "version", "freeze_backbone", "tune_mm_mlp_adapter", "vision_tower", "vision_tower_aux",
    "optimize_vision_tower", "optimize_vision_tower_aux", "drop_path", "image_processor",
    "mm_vision_select_layer", "pretrain_mm_mlp_adapter", "mm_projector_type", "mm_use_im_start_end",
    "mm_use_im_patch_token", "mm_vision_select_feature", "mm_patch_merge_type", "unfreeze_mm_vision_tower",
    # DataArguments
    "lazy_preprocess", "is_multimodal", "image_folder", "image_aspect_ratio", "image_grid_pinpoints",
    "image_size_aux", "image_grid", "image_global",
    # TrainingArguments additions
    "freeze_mm_mlp_adapter", "mpt_attn_impl", "model_max_length", "double_quant", "quant_type", "bits",
    "lora_enable", "lora_r", "lora_alpha", "lora_dropout", "lora_weight_path", "lora_bias", "mm_projector_lr",
    "mm_vision_tower_lr", "group_by_modality_length", "lr_multi",
})

OTHER_REPO_FLAGS = frozenset({
    # Qwen / Qwen-VL / MiniCPM-V / DeepSeek-MoE / FastChat finetune.py (LoraArguments, ModelArguments)
    "use_lora", "q_lora", "fix_vit", "tune_vision", "tune_llm", "llm_type", "eval_data_path", "max_slice_nums",
    "lora_target_modules", "lora_modules_to_save", "lora_layer_replication", "lora_layers_to_transform",
    # InternVL internvl_chat_finetune.py
    "freeze_llm", "freeze_mlp", "grad_checkpoint", "use_backbone_lora", "use_llm_lora", "force_image_size",
    "max_dynamic_patch", "min_dynamic_patch", "down_sample_ratio", "drop_path_rate", "vision_select_layer",
    "conv_style", "meta_path", "dynamic_image_size", "use_thumbnail", "ps_version", "use_packed_ds",
    # LLaMA-Factory (hparams/*.py)
    "stage", "finetuning_type", "lora_target", "lora_rank", "quantization_bit", "quantization_method",
    "template", "dataset_dir", "max_samples", "val_size", "overwrite_cache", "preprocessing_num_workers",
    "plot_loss", "enable_liger_kernel", "freeze_vision_tower", "train_mm_proj_only",
    "freeze_multi_modal_projector", "disable_gradient_checkpointing", "use_unsloth", "image_max_pixels",
    # TRL ModelConfig / SFTConfig
    "use_peft", "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "use_bnb_nested_quant", "packing",
    "eos_token", "dataset_text_field", "dataset_config", "model_init_kwargs", "completion_only_loss",
    # alpaca-lora finetune.py (fire): global batch and micro-batch, base model
    "base_model", "batch_size", "micro_batch_size", "num_epochs", "val_set_size", "train_on_inputs",
    "add_eos_token", "prompt_template_name", "wandb_project", "wandb_run_name", "wandb_watch", "wandb_log_model",
})

KNOWN_TRAINING_FLAGS = HF_TRAINING_FLAGS | MGM_LLAVA_FLAGS | OTHER_REPO_FLAGS

MODEL_PATH_FLAGS = ("model_name_or_path", "base_model")
"""Flags that name the model, most common first (alpaca-lora's finetune.py takes ``--base_model``)."""

LORA_SWITCH_FLAGS = ("lora_enable", "use_lora", "use_peft")
"""Boolean switches that turn LoRA on (LLaVA/MGM, Qwen/MiniCPM-V/DeepSeek-MoE, TRL)."""

QLORA_SWITCH_FLAGS = ("q_lora", "load_in_4bit")
"""Boolean switches that load the base model in 4 bits under LoRA (Qwen/FastChat ``--q_lora``, TRL)."""

FOUR_BIT_FLAGS = ("bits", "quantization_bit")
"""Integer flags whose value 4 means QLoRA (LLaVA/MGM/DeepSeek-MoE ``--bits``, LLaMA-Factory)."""

LORA_RANK_FLAGS = ("lora_r", "lora_rank")
LORA_ONLY_ENTRY_MARKER = "lora"
"""An entry script whose file name contains this (FastChat ``train_lora.py``) trains LoRA without a switch."""

GRAD_CKPT_FLAGS = ("gradient_checkpointing", "grad_checkpoint")
"""Flags that turn gradient checkpointing on (HF, InternVL)."""

SEQ_LEN_FLAGS = ("model_max_length", "max_seq_length", "max_length", "cutoff_len", "seq_length")
"""Flags that set the training sequence length, most specific first."""

OPTIM_MAP = {
    "adamw_torch": "adamw", "adamw_hf": "adamw", "adamw": "adamw", "adamw_torch_fused": "adamw-fused",
    "adamw_apex_fused": "adamw-fused", "adamw_bnb_8bit": "adamw-8bit", "adamw_8bit": "adamw-8bit",
    "paged_adamw_8bit": "paged-adamw-8bit", "paged_adamw_32bit": "adamw", "adafactor": "adafactor",
    "sgd": "sgd", "adamw_torch_xla": "adamw", "adamw_torch_npu_fused": "adamw-fused",
}
"""HF ``--optim`` names -> scenario ``train.optimizer``."""

ATTENTION_MAP = {
    "flash_attention_2": "flash", "flash_attention_3": "flash", "flash": "flash", "sdpa": "sdpa",
    "eager": "eager",
}

FLASH_ENTRY_POINTS = ("train_mem.py", "train_mem")
"""LLaVA / MGM ``train_mem.py`` calls ``train(attn_implementation="flash_attention_2")`` (mgm.md §2.1)."""

LEAF_MODULE_ENTRY_POINTS = ("mgm/train/train", "mgm.train.train", "minigemini/train/train", "minigemini.train.train",
                            "llamafactory", "llama_factory", "src/train.py", "llamafactory-cli train")
"""Training code known to call ``deepspeed.utils.set_z3_leaf_modules`` for MoE blocks (MGM train.py;
LLaMA-Factory model_utils/moe.py)."""
