"""DeepSpeed JSON configs -> ``DeepSpeedSettings`` (with HF Trainer's "auto" values resolved) -> scenario ``parallel:``.

Owns reading a ``ds_config.json`` (errors give the file, line and column), DeepSpeed's defaults for
the keys that move memory, and resolving ``"auto"`` the way HF Trainer does
(transformers ``integrations/deepspeed.py``, ``HfTrainerDeepSpeedConfig``):

- ``trainer_config_process``: ``train_micro_batch_size_per_gpu`` = ``per_device_train_batch_size``,
  ``gradient_accumulation_steps`` = its flag, ``train_batch_size`` = world x micro x GA,
  ``fp16.enabled`` = ``--fp16``, ``bf16.enabled`` = ``--bf16``. A value that is not "auto" and differs
  from TrainingArguments is a *mismatch*: HF raises ``ValueError`` at ``trainer_config_finalize``.
- ``trainer_config_finalize``: ``reduce_bucket_size`` = h^2; at stage 3 also
  ``stage3_prefetch_bucket_size`` = 0.9 h^2 and ``stage3_param_persistence_threshold`` = 10 h
  (h = the model config's ``hidden_size``).

DeepSpeed defaults (deepspeed/runtime/zero/config.py, offload_config.py; engine-internals.md §1.1):
stage 0; buckets 5e8 elements; overlap_comm True only at stage 3; contiguous_gradients True;
sub_group_size 1e9; prefetch 5e7; persistence 1e5; max_live/reuse 1e9; pin_memory False;
``zero_force_ds_cpu_optimizer`` True. Imports only ``vramplan.core``; no IO beyond reading the file.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import ScenarioError, VramplanError
from ._json_tools import Reader, collect_auto, is_auto, read_json_file, section, set_dotted

DEFAULT_BUCKET = 500_000_000
DEFAULT_PREFETCH = 50_000_000
DEFAULT_PERSISTENCE = 100_000
DEFAULT_MAX_LIVE = 1_000_000_000
DEFAULT_SUB_GROUP = 1_000_000_000
DEFAULT_PARAM_BUFFER_SIZE = 100_000_000
DEFAULT_PARAM_BUFFER_COUNT = 5
HF_DEFAULT_MICRO_BATCH = 8
"""TrainingArguments.per_device_train_batch_size default."""



@dataclass(frozen=True, slots=True, kw_only=True)
class DeepSpeedSettings:
    """A DeepSpeed config as the engine will see it after HF Trainer filled its "auto" values."""

    source: str
    """File path, or ``<dict>``."""
    raw: Mapping[str, Any]
    """The config exactly as read (a deep copy; "auto" kept)."""
    zero_stage: int = 0
    offload_optimizer: str = "none"
    """``none``, ``cpu`` or ``nvme``."""
    offload_optimizer_pin_memory: bool = False
    offload_optimizer_ratio: float = 1.0
    offload_param: str = "none"
    offload_param_pin_memory: bool = False
    offload_param_buffer_size: int = DEFAULT_PARAM_BUFFER_SIZE
    offload_param_buffer_count: int = DEFAULT_PARAM_BUFFER_COUNT
    overlap_comm: bool = False
    """Resolved: DeepSpeed's default is True at stage 3, False below."""
    overlap_comm_set: bool = False
    """Whether the file sets ``overlap_comm`` itself."""
    contiguous_gradients: bool = True
    reduce_bucket_size: int | None = DEFAULT_BUCKET
    """Elements; ``None`` only when "auto" and the hidden size is unknown."""
    reduce_bucket_size_auto: bool = False
    allgather_bucket_size: int = DEFAULT_BUCKET
    allgather_bucket_size_set: bool = False
    stage3_prefetch_bucket_size: int | None = DEFAULT_PREFETCH
    """Elements (int of HF's 0.9 h^2 when "auto")."""
    prefetch_auto_fractional: bool = False
    """HF versions that write 0.9 h^2 as a float produce a fraction here (pydantic error on DeepSpeed >= 0.15)."""
    stage3_param_persistence_threshold: int | None = DEFAULT_PERSISTENCE
    stage3_max_live_parameters: int = DEFAULT_MAX_LIVE
    stage3_max_reuse_distance: int = DEFAULT_MAX_LIVE
    stage3_gather_16bit_weights_on_model_save: bool = False
    sub_group_size: int = DEFAULT_SUB_GROUP
    zero_hpz_partition_size: int = 1
    mics_shard_size: int = -1
    bf16_enabled: bool = False
    fp16_enabled: bool = False
    has_optimizer_block: bool = False
    optimizer_type: str | None = None
    has_scheduler_block: bool = False
    zero_force_ds_cpu_optimizer: bool = True
    train_batch_size: int | None = None
    train_micro_batch_size_per_gpu: int | None = None
    gradient_accumulation_steps: int | None = None
    activation_checkpointing_present: bool = False
    grad_accum_dtype: str | None = None
    auto_keys: tuple[str, ...] = ()
    """Dotted keys that were "auto" in the file."""
    fractional_int_keys: tuple[tuple[str, float], ...] = ()
    """Integer-typed keys written as floats with a fraction (DeepSpeed >= 0.15 rejects them)."""
    mismatches: tuple[str, ...] = ()
    """Values HF Trainer would reject (``ValueError: ... mismatch TrainingArguments``) or DeepSpeed's batch assert."""
    hidden_size: int | None = None
    world_size: int = 1

    @property
    def offloads(self) -> bool:
        """Anything offloaded (optimizer or params)."""
        return self.offload_optimizer != "none" or self.offload_param != "none"

    @property
    def pin_memory(self) -> bool:
        """Pinned host buffers for what is offloaded."""
        return (self.offload_optimizer != "none" and self.offload_optimizer_pin_memory) or (
            self.offload_param != "none" and self.offload_param_pin_memory
        )


def parse_deepspeed_config(
    path_or_dict: str | Path | Mapping[str, Any],
    *,
    hidden_size: int | None = None,
    world_size: int = 1,
    micro_batch: int | None = None,
    grad_accum: int | None = None,
    bf16: bool | None = None,
    fp16: bool | None = None,
) -> DeepSpeedSettings:
    """Parse a DeepSpeed config and resolve "auto" as HF Trainer would (module docstring).

    ``micro_batch``/``grad_accum``/``bf16``/``fp16`` are the TrainingArguments values
    (``--per_device_train_batch_size`` ...); ``None`` means "not known": "auto" then takes HF's default
    (8, 1, False, False) and no mismatch is reported for that key. ``hidden_size`` is the model config's
    ``hidden_size`` (``None``: hidden-size-based "auto" keys stay ``None``).
    """
    if isinstance(path_or_dict, Mapping):
        source, cfg = "<dict>", path_or_dict
    else:
        source, cfg = str(path_or_dict), read_json_file(path_or_dict)
    if not isinstance(cfg, Mapping):
        raise VramplanError(f"{source}: a DeepSpeed config must be a JSON object ({{...}}), got {type(cfg).__name__}")
    if world_size < 1:
        raise ScenarioError("world_size", world_size, "must be at least 1")
    rd = Reader(source)
    zero = section(cfg, "zero_optimization", source)
    stage_value = zero.get("stage", 0)
    if isinstance(stage_value, bool) or str(stage_value).strip() not in ("0", "1", "2", "3"):
        raise ScenarioError(f"{source}: zero_optimization.stage", stage_value, "must be 0, 1, 2 or 3")
    stage = int(str(stage_value).strip())
    opt_off = section(zero, "offload_optimizer", source)
    par_off = section(zero, "offload_param", source)
    offload_opt = rd.device(opt_off, "zero_optimization.offload_optimizer") if opt_off else "none"
    if zero.get("cpu_offload") is True and offload_opt == "none":  # legacy key (DeepSpeed < 0.3.16)
        offload_opt = "cpu"
    offload_par = rd.device(par_off, "zero_optimization.offload_param") if par_off else "none"
    ratio = opt_off.get("ratio", 1.0)
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        raise ScenarioError(f"{source}: zero_optimization.offload_optimizer.ratio", ratio, "must be a number in (0, 1]") from None

    h = hidden_size
    reduce_auto = is_auto(zero.get("reduce_bucket_size"))
    if reduce_auto:
        reduce_bucket = h * h if h else None
    else:
        reduce_bucket = rd.number(zero, "reduce_bucket_size", "zero_optimization.reduce_bucket_size", DEFAULT_BUCKET)
    prefetch_fractional = False
    if is_auto(zero.get("stage3_prefetch_bucket_size")):
        prefetch = None if not h else (int(0.9 * h * h) if stage == 3 else DEFAULT_PREFETCH)
        prefetch_fractional = h is not None and stage == 3 and (9 * h * h) % 10 != 0
    else:
        prefetch = rd.number(zero, "stage3_prefetch_bucket_size", "zero_optimization.stage3_prefetch_bucket_size", DEFAULT_PREFETCH)
    if is_auto(zero.get("stage3_param_persistence_threshold")):
        persistence = None if not h else (10 * h if stage == 3 else DEFAULT_PERSISTENCE)
    else:
        persistence = rd.number(
            zero, "stage3_param_persistence_threshold", "zero_optimization.stage3_param_persistence_threshold",
            DEFAULT_PERSISTENCE,
        )
    allgather = rd.number(zero, "allgather_bucket_size", "zero_optimization.allgather_bucket_size", DEFAULT_BUCKET)
    max_live = rd.number(zero, "stage3_max_live_parameters", "zero_optimization.stage3_max_live_parameters", DEFAULT_MAX_LIVE)
    max_reuse = rd.number(zero, "stage3_max_reuse_distance", "zero_optimization.stage3_max_reuse_distance", DEFAULT_MAX_LIVE)
    sub_group = rd.number(zero, "sub_group_size", "zero_optimization.sub_group_size", DEFAULT_SUB_GROUP)
    buffer_size = rd.number(par_off, "buffer_size", "zero_optimization.offload_param.buffer_size", DEFAULT_PARAM_BUFFER_SIZE)
    buffer_count = rd.number(par_off, "buffer_count", "zero_optimization.offload_param.buffer_count", DEFAULT_PARAM_BUFFER_COUNT)
    hpz = rd.number(zero, "zero_hpz_partition_size", "zero_optimization.zero_hpz_partition_size", 1)
    mics = rd.number(zero, "mics_shard_size", "zero_optimization.mics_shard_size", -1)
    overlap_set = "overlap_comm" in zero and not is_auto(zero.get("overlap_comm"))
    overlap = rd.flag(zero, "overlap_comm", "zero_optimization.overlap_comm", stage == 3) if overlap_set else stage == 3

    # precision: "auto" follows the TrainingArguments flags.
    mismatches: list[str] = []

    def precision(key: str, hf_value: bool | None, hf_flag: str) -> bool:
        """``enabled``: "auto" or absent follows the flag (accelerate fills it); a literal is kept and checked."""
        block = section(cfg, key, source)
        value = block.get("enabled")
        if value is None or is_auto(value):
            return bool(hf_value)
        enabled = rd.flag(block, "enabled", f"{key}.enabled", False)
        if hf_value is not None and enabled != bool(hf_value):
            mismatches.append(f"ds {key}.enabled={enabled} vs hf --{hf_flag}={bool(hf_value)}")
        return enabled

    bf16_on = precision("bf16", bf16, "bf16")
    fp16_on = precision("fp16", fp16, "fp16")

    # batch sizes: TrainingArguments values (or HF defaults when unknown) replace "auto".
    def batch(key: str, hf_value: int | None, default: int, hf_name: str) -> int | None:
        value = cfg.get(key)
        if value is None:
            return hf_value if hf_value is not None else None
        if is_auto(value):
            return hf_value if hf_value is not None else default
        number = rd.number(cfg, key, key, None)
        if hf_value is not None and number != hf_value:
            mismatches.append(f"ds {key}={number} vs hf {hf_name}={hf_value}")
        return number

    micro = batch("train_micro_batch_size_per_gpu", micro_batch, HF_DEFAULT_MICRO_BATCH, "per_device_train_batch_size")
    ga = batch("gradient_accumulation_steps", grad_accum, 1, "gradient_accumulation_steps")
    hf_global = None
    if micro_batch is not None or grad_accum is not None:
        hf_global = world_size * (micro_batch or HF_DEFAULT_MICRO_BATCH) * (grad_accum or 1)
    tbs = batch("train_batch_size", hf_global, world_size * (micro or HF_DEFAULT_MICRO_BATCH) * (ga or 1),
                "train_batch_size (calculated)")
    if tbs is not None and micro is not None and ga is not None and tbs != micro * ga * world_size:
        text = (f"ds train_batch_size={tbs} != train_micro_batch_size_per_gpu({micro}) x "
                f"gradient_accumulation_steps({ga}) x world_size({world_size}) = {micro * ga * world_size}")
        if not any(m.startswith("ds train_batch_size=") for m in mismatches):
            mismatches.append(text)

    optimizer = cfg.get("optimizer")
    data_types: Mapping[str, Any] = cfg["data_types"] if isinstance(cfg.get("data_types"), Mapping) else {}
    return DeepSpeedSettings(
        source=source,
        raw=copy.deepcopy(dict(cfg)),
        zero_stage=stage,
        offload_optimizer=offload_opt,
        offload_optimizer_pin_memory=rd.flag(opt_off, "pin_memory", "zero_optimization.offload_optimizer.pin_memory", False),
        offload_optimizer_ratio=ratio,
        offload_param=offload_par,
        offload_param_pin_memory=rd.flag(par_off, "pin_memory", "zero_optimization.offload_param.pin_memory", False),
        offload_param_buffer_size=buffer_size or DEFAULT_PARAM_BUFFER_SIZE,
        offload_param_buffer_count=buffer_count or DEFAULT_PARAM_BUFFER_COUNT,
        overlap_comm=overlap,
        overlap_comm_set=overlap_set,
        contiguous_gradients=rd.flag(zero, "contiguous_gradients", "zero_optimization.contiguous_gradients", True),
        reduce_bucket_size=reduce_bucket,
        reduce_bucket_size_auto=reduce_auto,
        allgather_bucket_size=allgather if allgather is not None else DEFAULT_BUCKET,
        allgather_bucket_size_set="allgather_bucket_size" in zero,
        stage3_prefetch_bucket_size=prefetch,
        prefetch_auto_fractional=prefetch_fractional,
        stage3_param_persistence_threshold=persistence,
        stage3_max_live_parameters=max_live if max_live is not None else DEFAULT_MAX_LIVE,
        stage3_max_reuse_distance=max_reuse if max_reuse is not None else DEFAULT_MAX_LIVE,
        stage3_gather_16bit_weights_on_model_save=rd.flag(
            zero, "stage3_gather_16bit_weights_on_model_save", "zero_optimization.stage3_gather_16bit_weights_on_model_save",
            bool(zero.get("gather_16bit_weights_on_model_save", False)),
        ),
        sub_group_size=sub_group if sub_group is not None else DEFAULT_SUB_GROUP,
        zero_hpz_partition_size=hpz if hpz is not None else 1,
        mics_shard_size=mics if mics is not None else -1,
        bf16_enabled=bf16_on,
        fp16_enabled=fp16_on,
        has_optimizer_block=isinstance(optimizer, Mapping),
        optimizer_type=str(optimizer.get("type")) if isinstance(optimizer, Mapping) and optimizer.get("type") else None,
        has_scheduler_block=isinstance(cfg.get("scheduler"), Mapping),
        zero_force_ds_cpu_optimizer=rd.flag(cfg, "zero_force_ds_cpu_optimizer", "zero_force_ds_cpu_optimizer", True),
        train_batch_size=tbs,
        train_micro_batch_size_per_gpu=micro,
        gradient_accumulation_steps=ga,
        activation_checkpointing_present=isinstance(cfg.get("activation_checkpointing"), Mapping),
        grad_accum_dtype=str(data_types.get("grad_accum_dtype")) if data_types.get("grad_accum_dtype") else None,
        auto_keys=tuple(collect_auto(cfg)),
        fractional_int_keys=tuple(rd.fractional),
        mismatches=tuple(mismatches),
        hidden_size=hidden_size,
        world_size=world_size,
    )


def deepspeed_settings_to_parallel(settings: DeepSpeedSettings) -> dict[str, Any]:
    """The scenario file's ``parallel:`` section for these settings (engine ``deepspeed``).

    Hidden-size-based "auto" values are written as ``"auto"`` (the estimator resolves them the same
    way); everything else as resolved integers. ``offload_param`` is passed through even below
    stage 3, where DeepSpeed (and the estimator) ignore it.
    """
    s = settings
    ds: dict[str, Any] = {
        "reduce_bucket_size": "auto" if s.reduce_bucket_size_auto or s.reduce_bucket_size is None else s.reduce_bucket_size,
        "allgather_bucket_size": s.allgather_bucket_size,
        "overlap_comm": s.overlap_comm if s.overlap_comm_set else "auto",
        "contiguous_gradients": s.contiguous_gradients,
        "stage3_max_live_parameters": s.stage3_max_live_parameters,
        "stage3_max_reuse_distance": s.stage3_max_reuse_distance,
        "sub_group_size": s.sub_group_size,
        "pin_memory": s.pin_memory,
    }
    if s.grad_accum_dtype is not None:  # data_types.grad_accum_dtype: ZeRO-0 bf16's optimizer (states.py)
        ds["grad_accum_dtype"] = s.grad_accum_dtype
    raw_zero = s.raw.get("zero_optimization") or {}
    for key, value in (
        ("stage3_prefetch_bucket_size", s.stage3_prefetch_bucket_size),
        ("stage3_param_persistence_threshold", s.stage3_param_persistence_threshold),
    ):
        if is_auto(raw_zero.get(key)) or value is None:
            ds[key] = "auto"
        elif key in raw_zero:
            ds[key] = value
    return {
        "engine": "deepspeed",
        "zero": s.zero_stage,
        "offload_optimizer": s.offload_optimizer,
        "offload_param": s.offload_param,
        "deepspeed": ds,
    }


__all__ = [
    "DeepSpeedSettings",
    "deepspeed_settings_to_parallel",
    "parse_deepspeed_config",
    "read_json_file",
    "set_dotted",
]
