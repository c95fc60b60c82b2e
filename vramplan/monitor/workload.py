"""A real training workload built from a scenario: model from its config (random weights), synthetic batches.

Owns ``build_workload`` (transformers ``from_config`` in the scenario's dtype on the target device;
full / freeze / LoRA (peft) / QLoRA (bitsandbytes 4-bit); gradient checkpointing; the engine:
single, DDP, FSDP (1), FSDP2 ``fully_shard`` or DeepSpeed ZeRO) and ``Workload.step`` (one
forward + backward + optimizer step on a synthetic batch of ``micro_batch x seq_len`` tokens, with
images for LLaVA-style VLMs). Used by ``vramplan probe`` and ``benchmarks/gpu_calibration.py``;
runs on the CPU too (tests use a tiny config), where nothing can run out of memory. The config dict comes
from ``vramplan.registry.load_config``.

Imports torch and transformers at module level: import this module only where they are needed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from ..core.errors import VramplanError
from ..core.scenario import Engine, GradCkpt, Method, Optimizer, Precision, Scenario

VISION_NAMES = ("vision_tower", "visual", "vision_model", "image_encoder")
PROJECTOR_NAMES = ("multi_modal_projector", "mm_projector", "merger", "connector")


_TEXT_SHRINK = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "vocab_size": 512,
                "moe_intermediate_size": 64, "shared_expert_intermediate_size": 64, "num_experts": 4,
                "num_local_experts": 4, "n_routed_experts": 4, "num_experts_per_tok": 2, "head_dim": 16,
                "first_k_dense_replace": 1}
_VISION_SHRINK = {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                  "projection_dim": 32, "image_size": 56, "patch_size": 14}
_TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "image_token_id", "image_token_index",
                  "video_token_id", "vision_start_token_id", "vision_end_token_id")


def _shrink_ids(data: dict[str, Any], vocab: int) -> None:
    for key in _TOKEN_ID_KEYS:
        value = data.get(key)
        if isinstance(value, int) and value >= vocab:
            data[key] = vocab - 1 - _TOKEN_ID_KEYS.index(key)
        elif isinstance(value, list):
            data[key] = [v if not isinstance(v, int) or v < vocab else vocab - 1 - _TOKEN_ID_KEYS.index(key)
                         for v in value]


def _shrink_text(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    heads = int(out.get("num_attention_heads") or 4)
    kv = out.get("num_key_value_heads")
    for key, value in _TEXT_SHRINK.items():
        if key in out and out[key] is not None:
            out[key] = min(int(out[key]), value) if key != "head_dim" else value
    out["num_attention_heads"] = 4
    if kv is not None:  # keep the attention kind: multi-head stays multi-head, grouped stays grouped
        out["num_key_value_heads"] = 4 if int(kv) >= heads else 2
    for key in ("layer_types", "mlp_only_layers"):  # per-layer lists follow num_hidden_layers
        if isinstance(out.get(key), list):
            out[key] = out[key][: out["num_hidden_layers"]]
    _shrink_ids(out, int(out.get("vocab_size", 512)))
    return out


def shrink_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The same architecture, tiny: 2 layers, hidden 64, vocabulary 512, 4 experts, a 2-layer 56 px vision tower.

    For rehearsing a GPU workload's code path on the CPU (``benchmarks/gpu_calibration.py --rehearse``):
    every module type, the method, checkpointing and the engine stay; only the sizes change. Token ids
    beyond the new vocabulary (BOS/EOS/pad, the image token) are moved inside it.
    """
    data = dict(config)
    if isinstance(data.get("text_config"), Mapping):
        data["text_config"] = _shrink_text(dict(data["text_config"]))
        vocab = int(data["text_config"].get("vocab_size", 512))
        if isinstance(data.get("vision_config"), Mapping):
            vision = dict(data["vision_config"])
            vision.update({k: v for k, v in _VISION_SHRINK.items() if k in vision or k in ("image_size", "patch_size")})
            data["vision_config"] = vision
        if "image_seq_length" in data:
            size, patch = _VISION_SHRINK["image_size"], _VISION_SHRINK["patch_size"]
            data["image_seq_length"] = (size // patch) ** 2
        if "vocab_size" in data:
            data["vocab_size"] = vocab
        _shrink_ids(data, vocab)
        return data
    return _shrink_text(data)


def hf_config(config: Mapping[str, Any]) -> Any:
    """A transformers ``PretrainedConfig`` from a config dict (original-LLaVA/MGM layouts are refused)."""
    import transformers

    data = dict(config)
    model_type = str(data.pop("model_type", "") or "")
    if "mm_vision_tower" in data or model_type in ("llava_llama", "llava_mistral", "mgm", "mini_gemini"):
        raise VramplanError(f"model_type={model_type!r} in the original LLaVA/MGM layout is not a transformers "
                            "model; probe its language model (a text-only config) or an HF-format LLaVA config")
    try:
        return transformers.AutoConfig.for_model(model_type, **data)
    except (ValueError, KeyError) as exc:
        raise VramplanError(f"model_type={model_type!r}: transformers {transformers.__version__} cannot build it "
                            f"({exc})") from None


def _is_vlm(cfg: Any) -> bool:
    return hasattr(cfg, "vision_config") and hasattr(cfg, "text_config")


def _part_of(name: str) -> str:
    if any(n in name for n in VISION_NAMES):
        return "vision"
    if any(n in name for n in PROJECTOR_NAMES):
        return "projector"
    return "llm"


@dataclass
class Workload:
    """A model ready to train and what one step needs."""

    model: Any
    optimizer: Any
    config: Any
    scenario: Scenario
    device: torch.device
    autocast_dtype: Any = None
    engine: Any = None
    """DeepSpeed engine, when used."""
    scaler: Any = None
    vocab_size: int = 0
    image: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def batch(self, micro_batch: int) -> dict[str, Any]:
        """A synthetic batch: random token ids (and images for a VLM), labels = inputs."""
        seq = self.scenario.train.seq_len
        ids = torch.randint(0, max(2, self.vocab_size - 1), (micro_batch, seq), device=self.device)
        if self.image:
            # a random text token equal to the image token id would be taken for an image slot
            # ("Image features and image tokens do not match"): about 1 in 150k tokens with a Qwen vocabulary
            token_id = self.image["token_id"]
            ids[ids == token_id] = token_id - 1 if token_id > 0 else token_id + 1
        out: dict[str, Any] = {"input_ids": ids, "labels": ids.clone()}
        if self.image:
            n = min(self.image["tokens"], seq)
            per = max(0, self.scenario.train.images_per_sample)
            if per and n:
                ids[:, :n] = self.image["token_id"]
                out["labels"][:, :n] = -100
                size = self.image["size"]
                out["pixel_values"] = torch.randn(micro_batch, 3, size, size, device=self.device,
                                                  dtype=self.image["dtype"])
        return out

    def step(self, micro_batch: int) -> None:
        """One forward, backward and optimizer step."""
        batch = self.batch(micro_batch)
        ctx = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype is not None
               else contextlib.nullcontext())
        if self.engine is not None:
            loss = self.engine(**batch).loss
            self.engine.backward(loss)
            self.engine.step()
            return
        with ctx:
            loss = self.model(**batch).loss
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def zero_grad(self) -> None:
        """Drop gradients (after an OOM)."""
        with contextlib.suppress(Exception):
            (self.engine or self.model).zero_grad(set_to_none=True)
        with contextlib.suppress(Exception):
            self.optimizer.zero_grad(set_to_none=True)


def _optimizer(scn: Scenario, params: list[Any]) -> Any:
    opt = scn.train.optimizer
    if opt in (Optimizer.ADAMW, Optimizer.ADAMW_FUSED):
        fused = opt is Optimizer.ADAMW_FUSED
        return torch.optim.AdamW(params, lr=1e-5, foreach=not fused, fused=fused)
    if opt in (Optimizer.ADAMW_8BIT, Optimizer.PAGED_ADAMW_8BIT):
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise VramplanError(f"train.optimizer={opt.value} needs bitsandbytes; run: pip install bitsandbytes") from None
        cls = bnb.optim.PagedAdamW8bit if opt is Optimizer.PAGED_ADAMW_8BIT else bnb.optim.AdamW8bit
        return cls(params, lr=1e-5)
    if opt is Optimizer.ADAFACTOR:
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=1e-5, relative_step=False, scale_parameter=False)
    return torch.optim.SGD(params, lr=1e-5)


def _quantize_4bit(model: Any, compute_dtype: Any) -> None:
    """Replace decoder linears by bitsandbytes NF4 ``Linear4bit`` (double quantization), as QLoRA does."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise VramplanError("train.method=qlora needs bitsandbytes (a CUDA build); run: pip install bitsandbytes") from None
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if not isinstance(child, torch.nn.Linear) or "lm_head" in full or _part_of(full) != "llm":
                continue
            q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                  compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4")
            q.weight = bnb.nn.Params4bit(child.weight.data.to("cpu"), requires_grad=False,
                                         compress_statistics=True, quant_type="nf4")
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, child_name, q.to(child.weight.device if child.weight.device.type != "cpu" else "cuda"))


def _ds_config(scn: Scenario) -> dict[str, Any]:
    par, knobs, train = scn.parallel, scn.parallel.deepspeed, scn.train
    zero: dict[str, Any] = {"stage": par.zero, "contiguous_gradients": knobs.contiguous_gradients,
                            "allgather_bucket_size": knobs.allgather_bucket_size,
                            "sub_group_size": knobs.sub_group_size}
    if knobs.reduce_bucket_size is not None:
        zero["reduce_bucket_size"] = knobs.reduce_bucket_size
    if knobs.overlap_comm is not None:
        zero["overlap_comm"] = knobs.overlap_comm
    if par.zero == 3:
        zero["stage3_max_live_parameters"] = knobs.stage3_max_live_parameters
        zero["stage3_max_reuse_distance"] = knobs.stage3_max_reuse_distance
        if knobs.stage3_prefetch_bucket_size is not None:
            zero["stage3_prefetch_bucket_size"] = knobs.stage3_prefetch_bucket_size
        if knobs.stage3_param_persistence_threshold is not None:
            zero["stage3_param_persistence_threshold"] = knobs.stage3_param_persistence_threshold
    if par.offload_optimizer.value != "none":
        zero["offload_optimizer"] = {"device": par.offload_optimizer.value, "pin_memory": knobs.pin_memory}
    if par.offload_param.value != "none" and par.zero == 3:
        zero["offload_param"] = {"device": par.offload_param.value, "pin_memory": knobs.pin_memory}
    return {
        "train_micro_batch_size_per_gpu": train.micro_batch,
        "gradient_accumulation_steps": 1,
        "bf16": {"enabled": train.precision in (Precision.BF16_MIXED, Precision.BF16_PURE)},
        "fp16": {"enabled": train.precision is Precision.FP16_MIXED},
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-5}},
        "steps_per_print": 1_000_000,
    }


def build_workload(config: Mapping[str, Any], scn: Scenario, device: str | torch.device = "cuda",
                   *, log: Callable[[str], None] = lambda s: None) -> Workload:
    """Build the model of ``config`` and everything ``scn`` says about training it (module docstring)."""
    import transformers

    device = torch.device(device)
    cfg = hf_config(config)
    train, par = scn.train, scn.parallel
    notes: list[str] = []
    attn = {"flash": "flash_attention_2", "sdpa": "sdpa", "eager": "eager"}[train.attention.value]
    if attn == "flash_attention_2" and (device.type != "cuda" or not transformers.utils.is_flash_attn_2_available()):
        notes.append("flash-attn is not installed: attention runs as sdpa (same O(s) memory on recent GPUs)")
        attn = "sdpa"
    if train.grad_ckpt is GradCkpt.SELECTIVE:
        notes.append("HF models have no selective recompute: full checkpointing is used")
    if train.loss.value == "chunked":
        notes.append("chunked loss (Liger) is not built in: the standard loss is used")
    half = torch.float16 if train.precision is Precision.FP16_MIXED else torch.bfloat16
    build_dtype = torch.float32 if train.precision is Precision.FP32 else half
    auto = transformers.AutoModelForImageTextToText if _is_vlm(cfg) else transformers.AutoModelForCausalLM
    meta = par.engine in (Engine.FSDP2, Engine.FSDP)
    ctx: Any = torch.device("meta") if meta else device
    zero3 = par.engine is Engine.DEEPSPEED and par.zero == 3
    if zero3:
        import deepspeed

        ctx = deepspeed.zero.Init(config_dict_or_path=_ds_config(scn), dtype=build_dtype)
    with ctx:
        try:
            model = auto.from_config(cfg, dtype=build_dtype, attn_implementation=attn)
        except TypeError:  # transformers < 4.56 names it torch_dtype
            model = auto.from_config(cfg, torch_dtype=build_dtype, attn_implementation=attn)
    log(f"built {type(model).__name__} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f}B params)")

    # what trains
    if train.method in (Method.LORA, Method.QLORA):
        if train.method is Method.QLORA:
            _quantize_4bit(model, half)
        try:
            import peft
        except ImportError:
            raise VramplanError(f"train.method={train.method.value} needs peft; run: pip install peft") from None
        if train.method is Method.QLORA:
            model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=train.grad_ckpt is not GradCkpt.NONE)
        targets = list(train.lora.targets)
        lcfg = peft.LoraConfig(r=train.lora.r, lora_alpha=train.lora.alpha, lora_dropout=train.lora.dropout,
                               target_modules="all-linear" if "all-linear" in targets else targets,
                               task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, lcfg)
    else:
        wanted = {p.value for p in train.trainable}
        for name, p in model.named_parameters():
            p.requires_grad_(_part_of(name) in wanted)
    if train.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED) and par.engine is not Engine.DEEPSPEED:
        for p in model.parameters():  # autocast keeps trainable weights in fp32 (vramplan: 4 B per trainable)
            if p.requires_grad and p.dtype != torch.float32 and not meta:
                p.data = p.data.float()
    if train.grad_ckpt is not GradCkpt.NONE:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    model.config.use_cache = False

    engine = scaler = None
    autocast = half if train.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED) else None
    if par.engine is Engine.DDP:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    elif par.engine is Engine.FSDP2:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=half, reduce_dtype=torch.float32) if autocast is not None else None
        for module in model.modules():
            if type(module).__name__.endswith("DecoderLayer"):
                fully_shard(module, **({"mp_policy": mp} if mp else {}))
        fully_shard(model, **({"mp_policy": mp} if mp else {}))
        if autocast is not None:
            model.to(torch.float32)
        model.to_empty(device=device)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.02)
        autocast = None
    elif par.engine is Engine.FSDP:
        from torch.distributed.fsdp import FullyShardedDataParallel, MixedPrecision, ShardingStrategy
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        layers = {type(m) for m in model.modules() if type(m).__name__.endswith("DecoderLayer")}
        strategy = {"full-shard": ShardingStrategy.FULL_SHARD, "shard-grad-op": ShardingStrategy.SHARD_GRAD_OP,
                    "hybrid-shard": ShardingStrategy.HYBRID_SHARD, "no-shard": ShardingStrategy.NO_SHARD}
        model = FullyShardedDataParallel(
            model.to(torch.float32) if autocast is not None else model, auto_wrap_policy=ModuleWrapPolicy(layers),
            sharding_strategy=strategy[par.fsdp_sharding.value], device_id=device, use_orig_params=True,
            param_init_fn=lambda m: m.to_empty(device=device, recurse=False),
            mixed_precision=MixedPrecision(param_dtype=half, reduce_dtype=torch.float32) if autocast is not None else None)
        autocast = None
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise VramplanError("nothing trains in this scenario (check train.method and train.trainable)")
    if par.engine is Engine.DEEPSPEED:
        import deepspeed

        engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=trainable, config=_ds_config(scn))
        autocast = None
    else:
        if par.engine not in (Engine.FSDP, Engine.FSDP2):
            model.to(device)
        optimizer = _optimizer(scn, trainable)
        if train.precision is Precision.FP16_MIXED:
            scaler = torch.amp.GradScaler(device.type)
    model.train()
    image: dict[str, Any] = {}
    if _is_vlm(cfg):
        vc = cfg.vision_config
        size = int(getattr(vc, "image_size", 336))
        patch = int(getattr(vc, "patch_size", 14))
        tokens = (size // patch) ** 2
        if getattr(cfg, "vision_feature_select_strategy", "default") == "full":
            tokens += 1
        image = {"size": size, "tokens": tokens, "token_id": int(getattr(cfg, "image_token_id", None)
                                                                   or getattr(cfg, "image_token_index", 0)),
                 "dtype": half if build_dtype != torch.float32 else torch.float32}
        if getattr(cfg, "model_type", "") != "llava" and train.images_per_sample > 0:
            raise VramplanError(f"model_type={cfg.model_type!r}: synthetic image batches are built for LLaVA only; "
                                "set train.images_per_sample: 0 to probe the text path")
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return Workload(model=model, optimizer=optimizer, config=cfg, scenario=scn, device=device, autocast_dtype=autocast,
                    engine=engine, scaler=scaler, vocab_size=int(text_cfg.vocab_size), image=image, notes=notes)

