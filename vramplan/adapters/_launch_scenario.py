"""``LaunchSpec`` + ``DeepSpeedSettings`` -> a scenario dict (the scenario-file schema of ``scenario_file.py``).

How the training flags map (MGM ``mgm/train/train.py``, LLaVA ``llava/train/train.py``, mgm.md §2.3):
- ``--tune_mm_mlp_adapter True`` (stage 1): method ``freeze``, trainable ``[projector]``;
  otherwise full fine-tuning of ``[llm, projector]`` (``--freeze_backbone True``: the LLM is frozen);
  ``--optimize_vision_tower(_aux)``/``--unfreeze_mm_vision_tower`` add the towers;
- LoRA (``lora_settings``): ``--lora_enable``/``--use_lora``/``--use_peft`` True or LLaMA-Factory's
  ``--finetuning_type lora``, or an entry script that is LoRA-only (``train_lora.py``, or a ``--lora_r``
  with no switch at all, as alpaca-lora's ``finetune.py``): method ``lora`` (r = ``--lora_r``/``--lora_rank``,
  default 64 as in train.py; targets all linear layers, LLaVA's ``find_all_linear_names``); QLoRA with
  ``--bits 4``/``--quantization_bit 4``/``--q_lora``/``--load_in_4bit``;
- vision-language trainable parts: Qwen-VL ``--fix_vit False``, MiniCPM-V ``--tune_vision``/``--tune_llm``,
  InternVL ``--freeze_llm``/``--freeze_mlp``/``--freeze_backbone`` (its backbone is the vision tower);
- ``--model_max_length`` -> ``seq_len``; one image per sample for VLMs;
- ``--bf16``/``--fp16`` (or the DeepSpeed JSON's resolved values; without either flag, accelerate's
  ``mixed_precision``) -> precision;
- ``--optim`` -> optimizer (a DeepSpeed ``optimizer`` block means DeepSpeed's fused Adam);
- ``--gradient_checkpointing`` -> ``grad_ckpt: full``; ``--attn_implementation`` (``train_mem.py`` forces
  FlashAttention-2) -> attention; ``--use_liger_kernel`` -> chunked loss;
- ``PYTORCH_CUDA_ALLOC_CONF`` with ``expandable_segments:True`` -> ``expandable_segments``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.errors import ScenarioError, VramplanError
from ._launch_flags import (
    ATTENTION_MAP,
    FLASH_ENTRY_POINTS,
    FOUR_BIT_FLAGS,
    LEAF_MODULE_ENTRY_POINTS,
    LORA_ONLY_ENTRY_MARKER,
    LORA_RANK_FLAGS,
    LORA_SWITCH_FLAGS,
    OPTIM_MAP,
    QLORA_SWITCH_FLAGS,
)
from ._launch_model import model_from_path
from .deepspeed_config import DeepSpeedSettings, deepspeed_settings_to_parallel

if TYPE_CHECKING:
    from .launch_script import LaunchSpec

DEFAULT_SEQ_LEN = 2048
MGM_DEFAULT_LORA_R = 64
MGM_DEFAULT_LORA_ALPHA = 16
LLAMA_FACTORY_DEFAULT_LORA_RANK = 8
"""LLaMA-Factory ``FinetuningArguments.lora_rank`` default."""
_COUNT = re.compile(r"^\s*\d+\s*[x×*]", re.IGNORECASE)


def model_reference(launch: LaunchSpec) -> tuple[str | None, str]:
    """(model reference, how it was found) from the launch flags (``_launch_model.model_from_path``)."""
    from .launch_script import search_dirs

    return model_from_path(
        launch.model_path,
        vision_tower=launch.flag("vision_tower"),
        vision_tower_aux=launch.flag("vision_tower_aux"),
        image_size_aux=launch.int_flag("image_size_aux"),
        image_grid=launch.int_flag("image_grid"),
        search_dirs=search_dirs(launch.base_dir),
    )


def cannot_tell_model(why: str) -> str:
    """The one-line error when the script's model is not known (``why`` from ``model_reference``)."""
    if "--model " in why:
        return f"cannot tell the model: {why}"
    return f"cannot tell the model: {why}; pass --model PRESET or a config.json"


def calls_z3_leaf_modules(launch: LaunchSpec) -> bool:
    """Whether the training code is known to call ``set_z3_leaf_modules`` (MGM, LLaMA-Factory) or accelerate will."""
    entry = launch.entry.replace("\\", "/").lower()
    if any(marker in entry for marker in LEAF_MODULE_ENTRY_POINTS) or entry.endswith("train_mem.py") and "mgm" in entry:
        return True
    return bool(launch.env.get("ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES")
                or launch.launcher_args.get("deepspeed_moe_layer_cls_names"))


def attention_of(launch: LaunchSpec) -> str:
    """Attention implementation the run uses."""
    impl = launch.flag("attn_implementation")
    if impl:
        return ATTENTION_MAP.get(impl.strip().lower(), "sdpa")
    if launch.bool_flag("use_flash_attn") or launch.bool_flag("flash_attn") or launch.bool_flag("use_flash_attention_2"):
        return "flash"
    name = launch.entry.replace("\\", "/").rsplit("/", 1)[-1]
    if launch.entry_is_module:
        name = name.rsplit(".", 1)[-1]
    if name in FLASH_ENTRY_POINTS:
        return "flash"
    return "sdpa"  # transformers' default for Llama-family models since 4.36


def expandable_segments(env: Mapping[str, str]) -> bool:
    """``PYTORCH_CUDA_ALLOC_CONF`` (or PYTORCH_ALLOC_CONF) contains ``expandable_segments:True``."""
    text = (env.get("PYTORCH_CUDA_ALLOC_CONF", "") + "," + env.get("PYTORCH_ALLOC_CONF", "")).replace(" ", "")
    return "expandable_segments:true" in text.lower()


def hardware_dict(launch: LaunchSpec, gpus: str | None, nodes: int | None, host_ram: str | int | None) -> dict[str, Any]:
    """The ``hardware:`` section: ``--gpus`` with a count overrides the script's count (see launch_to_scenario_dict)."""
    from ..registry import list_gpus, parse_gpus

    if not gpus:
        raise VramplanError("doctor needs the GPU model: pass --gpus, e.g. --gpus 4xrtx4090 (the script does not say "
                            "which GPUs it runs on)")
    gpu, count = parse_gpus(gpus)
    hw: dict[str, Any] = {"gpu": gpu.id if gpu.id in {g.id for g in list_gpus()} else _COUNT.sub("", gpus).strip()}
    if _COUNT.match(gpus):
        hw["gpus_per_node"] = count
        hw["nodes"] = nodes or 1
    else:
        per_node = launch.gpus_per_node
        if per_node is None:
            raise ScenarioError("--gpus", gpus, f"gives no count and the script starts '{launch.gpu_count_source}'",
                                "write the count, e.g. --gpus 4x" + gpus)
        hw["gpus_per_node"] = per_node
        hw["nodes"] = nodes or launch.nodes or 1
    if host_ram is not None:
        hw["host_ram_gb"] = host_ram
    return hw


def lora_settings(launch: LaunchSpec) -> tuple[str, str] | None:
    """(``lora`` or ``qlora``, which flag says so) when the run trains LoRA adapters, else None.

    An explicit switch decides (``--lora_enable``/``--use_lora``/``--use_peft``, LLaMA-Factory's
    ``--finetuning_type``); without one, an entry script named ``*lora*`` (FastChat ``train_lora.py``)
    or a LoRA rank passed to a script with no switch (alpaca-lora ``finetune.py``) means LoRA.
    """
    switch = next((name for name in LORA_SWITCH_FLAGS if name in launch.args), None)
    if switch is not None:
        on, why = launch.bool_flag(switch), f"--{switch} {launch.args[switch]}"
    elif "finetuning_type" in launch.args:
        kind = launch.args["finetuning_type"].strip().lower()
        on, why = kind in ("lora", "oft"), f"--finetuning_type {kind}"
    else:
        entry_name = launch.entry.replace("\\", "/").rsplit("/", 1)[-1].lower()
        rank_flag = next((name for name in LORA_RANK_FLAGS if name in launch.args), None)
        on = LORA_ONLY_ENTRY_MARKER in entry_name or rank_flag is not None
        why = f"entry {entry_name}" if LORA_ONLY_ENTRY_MARKER in entry_name else f"--{rank_flag} without a LoRA switch"
    if not on:
        return None
    four_bit = any(launch.int_flag(name) == 4 for name in FOUR_BIT_FLAGS) or any(
        launch.bool_flag(name) for name in QLORA_SWITCH_FLAGS if name in launch.args)
    return ("qlora" if four_bit else "lora"), why


def _vision_language_trainable(launch: LaunchSpec, trainable: list[str]) -> list[str]:
    """Trainable parts after the VLM repos' own switches (Qwen-VL, MiniCPM-V, InternVL, LLaVA/MGM)."""
    parts = list(trainable)

    def toggle(part: str, on: bool) -> None:
        if on and part not in parts:
            parts.append(part)
        if not on and part in parts:
            parts.remove(part)

    if launch.bool_flag("freeze_mm_mlp_adapter") and "projector" in parts and len(parts) > 1:
        parts.remove("projector")
    if launch.bool_flag("optimize_vision_tower") or launch.bool_flag("unfreeze_mm_vision_tower"):
        toggle("vision", True)
    if launch.bool_flag("optimize_vision_tower_aux"):
        toggle("vision_aux", True)
    if "fix_vit" in launch.args:  # Qwen-VL finetune.py: the ViT trains unless fixed
        toggle("vision", not launch.bool_flag("fix_vit"))
    if "tune_vision" in launch.args:  # MiniCPM-V finetune.py
        toggle("vision", launch.bool_flag("tune_vision"))
    if "tune_llm" in launch.args:
        toggle("llm", launch.bool_flag("tune_llm"))
    if "freeze_llm" in launch.args:  # InternVL: --freeze_backbone is the vision tower there
        toggle("llm", not launch.bool_flag("freeze_llm"))
        toggle("vision", not launch.bool_flag("freeze_backbone"))
        toggle("projector", not launch.bool_flag("freeze_mlp"))
    return parts or ["projector"]


def _train(launch: LaunchSpec, ds: DeepSpeedSettings | None, is_vlm: bool, world: int) -> dict[str, Any]:
    train: dict[str, Any] = {}
    trainable = ["llm", "projector"] if is_vlm else ["llm"]
    if launch.bool_flag("tune_mm_mlp_adapter"):
        train["method"], trainable = "freeze", ["projector"]
    elif launch.bool_flag("freeze_backbone") and "freeze_llm" not in launch.args:
        train["method"] = "freeze"
        trainable = [p for p in trainable if p != "llm"] or ["projector"]
    else:
        train["method"] = "full"
    if is_vlm:
        trainable = _vision_language_trainable(launch, trainable)
        if "llm" not in trainable and train["method"] == "full":
            train["method"] = "freeze"
    lora = lora_settings(launch)
    if lora is not None:
        train["method"] = lora[0]
        rank_flag = next((name for name in LORA_RANK_FLAGS if name in launch.args), "lora_r")
        default_rank = LLAMA_FACTORY_DEFAULT_LORA_RANK if launch.is_llama_factory else MGM_DEFAULT_LORA_R
        train["lora"] = {
            "r": launch.int_flag(rank_flag, default_rank),
            "alpha": launch.int_flag("lora_alpha", MGM_DEFAULT_LORA_ALPHA),
            "targets": ["all-linear"],
            "dropout": float(launch.flag("lora_dropout") or 0.05),
        }
        if "llm" not in trainable:
            trainable.insert(0, "llm")
    train["trainable"] = trainable
    bf16 = ds.bf16_enabled if ds is not None else launch.bf16
    fp16 = ds.fp16_enabled if ds is not None else launch.fp16
    train["precision"] = "bf16-mixed" if bf16 else "fp16-mixed" if fp16 else "fp32"
    optim = (launch.flag("optim") or "adamw_torch").strip().lower()
    if launch.bool_flag("adafactor"):
        optim = "adafactor"
    if ds is not None and ds.has_optimizer_block:
        train["optimizer"] = "adamw-fused"  # DeepSpeed FusedAdam / CPUAdam: no foreach temporaries
    else:
        train["optimizer"] = OPTIM_MAP.get(optim, "adamw")
    train["micro_batch"] = launch.micro_batch
    train["grad_accum"] = launch.grad_accum_for(world)
    train["seq_len"] = launch.seq_len or DEFAULT_SEQ_LEN
    train["images_per_sample"] = 1 if is_vlm else 0
    train["grad_ckpt"] = "full" if launch.gradient_checkpointing else "none"
    train["attention"] = attention_of(launch)
    liger = launch.bool_flag("use_liger_kernel") or launch.bool_flag("enable_liger_kernel")
    train["loss"] = "chunked" if liger else "standard"
    return train


_ACCELERATE_FSDP_SHARDING = {"1": "full-shard", "2": "shard-grad-op", "3": "no-shard", "4": "hybrid-shard",
                             "full_shard": "full-shard", "shard_grad_op": "shard-grad-op", "no_shard": "no-shard",
                             "hybrid_shard": "hybrid-shard"}


def _accelerate_fsdp(largs: Mapping[str, str]) -> dict[str, Any]:
    """``parallel:`` for ``accelerate launch --use_fsdp`` (CLI options or the config file's ``fsdp_config``)."""
    strategy = largs.get("fsdp_sharding_strategy", "FULL_SHARD").strip().lower()
    offload = largs.get("fsdp_offload_params", "false").strip().lower() == "true"
    return {"engine": "fsdp2" if largs.get("fsdp_version", "1").strip() == "2" else "fsdp",
            "fsdp_sharding": _ACCELERATE_FSDP_SHARDING.get(strategy, "full-shard"),
            "offload_param": "cpu" if offload else "none"}


def _parallel(launch: LaunchSpec, ds: DeepSpeedSettings | None, world: int) -> dict[str, Any]:
    if ds is not None:
        par = deepspeed_settings_to_parallel(ds)
    else:
        fsdp = (launch.flag("fsdp") or "").lower()
        accelerate_fsdp = launch.launcher == "accelerate" and launch.launcher_args.get("use_fsdp") == "true"
        if accelerate_fsdp and not fsdp:
            par = _accelerate_fsdp(launch.launcher_args)
        elif fsdp and fsdp not in ("false", "none", ""):
            words = set(fsdp.replace(",", " ").split())
            sharding = next((w.replace("_", "-") for w in ("full_shard", "shard_grad_op", "hybrid_shard", "no_shard")
                             if w in words), "full-shard")
            par = {"engine": "fsdp", "fsdp_sharding": sharding, "offload_param": "cpu" if "offload" in words else "none"}
        else:
            par = {"engine": "ddp" if world > 1 else "single"}
    if par.get("engine") == "deepspeed":
        par.setdefault("deepspeed", {})["moe_leaf_modules"] = calls_z3_leaf_modules(launch)
    par["expandable_segments"] = expandable_segments(launch.env)
    return par


def launch_to_scenario_dict(
    launch: LaunchSpec,
    ds_settings: DeepSpeedSettings | None,
    *,
    gpus: str | None,
    model: str | None = None,
    host_ram: str | int | None = None,
    nodes: int | None = None,
    is_vlm: bool | None = None,
) -> dict[str, Any]:
    """A scenario dict for this launch (module docstring for the mapping).

    ``gpus`` is the ``--gpus`` text: ``4xrtx4090`` sets the processes per node (overriding the script's
    own count), a bare ``rtx4090`` takes the count from the launcher. ``model`` (preset, config.json or Hub
    id) overrides the model found from ``--model_name_or_path``. ``is_vlm`` says whether the model has
    vision towers (default: whether the script passes ``--vision_tower``).
    """
    ref = model
    if ref is None:
        ref, why = model_reference(launch)
        if ref is None:
            raise VramplanError(cannot_tell_model(why))
    if is_vlm is None:
        is_vlm = bool(launch.flag("vision_tower") or launch.flag("vision_tower_aux"))
    hardware = hardware_dict(launch, gpus, nodes, host_ram)
    world = hardware["gpus_per_node"] * hardware["nodes"]
    return {
        "model": ref,
        "train": _train(launch, ds_settings, is_vlm, world),
        "hardware": hardware,
        "parallel": _parallel(launch, ds_settings, world),
    }
