"""Scenario files (YAML or JSON) and plain dicts <-> ``Scenario``.

The schema (every key optional except ``model``)::

    model: mgm-2b                 # preset, path to config.json, or Hub id
    train: {method, trainable, lora: {r, alpha, targets, dropout}, precision, optimizer,
            micro_batch, grad_accum, seq_len, images_per_sample, grad_ckpt, attention, loss}
    hardware: {gpu, gpus_per_node, nodes, host_ram_gb}
    parallel: {engine, zero, offload_optimizer, offload_param, tp, pp, ep, fsdp_sharding,
               expandable_segments, deepspeed: {reduce_bucket_size, allgather_bucket_size,
               overlap_comm, contiguous_gradients, stage3_prefetch_bucket_size,
               stage3_param_persistence_threshold, stage3_max_live_parameters,
               stage3_max_reuse_distance, sub_group_size, moe_leaf_modules, zero_init, pin_memory}}
    headroom: 0.03

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core.errors import ScenarioError, VramplanError
from ..core.hardware import ClusterSpec
from ..core.model import ModelSpec, Part
from ..core.scenario import (
    Attention,
    Choice,
    DeepSpeedKnobs,
    Engine,
    FsdpSharding,
    GradCkpt,
    LoraSpec,
    Loss,
    Method,
    Offload,
    Optimizer,
    ParallelSpec,
    Precision,
    Scenario,
    TrainSpec,
)
from ..core.units import GB, GiB

TOP_KEYS = {"model", "train", "hardware", "parallel", "headroom", "name", "description"}
TRAIN_KEYS = {
    "method", "trainable", "lora", "precision", "optimizer", "micro_batch", "grad_accum", "seq_len",
    "images_per_sample", "image_size", "grad_ckpt", "attention", "loss",
}
LORA_KEYS = {"r", "alpha", "targets", "dropout"}
HARDWARE_KEYS = {"gpu", "gpus_per_node", "nodes", "host_ram_gb"}
PARALLEL_KEYS = {
    "engine", "zero", "offload_optimizer", "offload_param", "tp", "pp", "ep", "deepspeed", "fsdp_sharding",
    "expandable_segments",
}
DEEPSPEED_KEYS = {
    "reduce_bucket_size", "allgather_bucket_size", "overlap_comm", "contiguous_gradients",
    "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold", "stage3_max_live_parameters",
    "stage3_max_reuse_distance", "sub_group_size", "moe_leaf_modules", "zero_init", "pin_memory",
    "grad_accum_dtype",
}
GRAD_ACCUM_DTYPES = {"fp32": "fp32", "float32": "fp32", "float": "fp32", "torch.float32": "fp32",
                     "bf16": "bf16", "bfloat16": "bf16", "torch.bfloat16": "bf16",
                     "fp16": "fp16", "float16": "fp16", "half": "fp16", "torch.float16": "fp16"}
"""DeepSpeed ``data_types.grad_accum_dtype`` spellings (DeepSpeed's ``DtypeEnum``) -> DeepSpeedKnobs' value."""


def parse_grad_accum_dtype(field: str, value: Any) -> str | None:
    """``grad_accum_dtype``: None / "auto" = the model dtype (DeepSpeed's default); else fp32, bf16 or fp16."""
    if value is None or str(value).lower() == "auto":
        return None
    out = GRAD_ACCUM_DTYPES.get(str(value).lower())
    if out is None:
        raise ScenarioError(field, value, "must be fp32, bf16 or fp16 (or auto: the model dtype)")
    return out


AUTO_KEYS = {"reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold", "overlap_comm"}


def read_structured_file(path: str | Path) -> Any:
    """Parse a YAML or JSON file; errors name the file, line and column."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise VramplanError(f"{p}: cannot read ({exc.strerror}); check the path") from None
    if p.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise VramplanError(f"{p}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise VramplanError(f"{where}: invalid YAML: {problem}") from None


def load_scenario_ref(ref: str | Path) -> dict[str, Any]:
    """A scenario dict from a scenario file (YAML/JSON) or the name of a built-in scenario."""
    from ..registry.scenario_presets import builtin_scenario, builtin_scenario_names

    path = Path(ref)
    if path.is_file():
        data = read_structured_file(path)
        if not isinstance(data, dict):
            raise VramplanError(f"{path}: a scenario file must hold a mapping (model:, train:, ...)")
        return data
    if str(ref) in builtin_scenario_names():
        return builtin_scenario(str(ref))
    raise VramplanError(
        f"scenario {str(ref)!r}: no such file or built-in scenario; built-ins: {', '.join(builtin_scenario_names())}"
    )


def _check_keys(section: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ScenarioError(
            f"{section}.{unknown[0]}" if section else unknown[0], data[unknown[0]], "unknown key",
            f"valid keys: {', '.join(sorted(allowed))}",
        )


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise ScenarioError(key, value, "must be a mapping", f"write it as '{key}: {{...}}'")
    return value


def parse_int(field: str, value: Any, allow_auto: bool = False) -> int | None:
    """An integer from 8, "8", 5e8, "5e8", "1_000" (and "auto" -> None where allowed)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        if allow_auto:
            return None
        raise ScenarioError(field, value, "needs a number here")
    if isinstance(value, bool):
        raise ScenarioError(field, value, "must be a number, not true/false")
    try:
        number = float(str(value).replace("_", "")) if isinstance(value, str) else float(value)
    except ValueError:
        raise ScenarioError(field, value, "is not a number", "write e.g. 8 or 5e8") from None
    if number != int(number):
        raise ScenarioError(field, value, "must be a whole number")
    return int(number)


def parse_bool(field: str, value: Any) -> bool:
    """true/false, yes/no, 1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ScenarioError(field, value, "must be true or false")


def parse_size_bytes(field: str, value: Any) -> int:
    """Bytes from '256GB', '128GiB', '64G' (GiB), or a bare number of GiB."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * GiB)
    text = str(value).strip().lower().replace(" ", "")
    for suffix, unit in (("gib", GiB), ("gb", GB), ("g", GiB), ("tib", 1024 * GiB), ("tb", 1000 * GB)):
        if text.endswith(suffix):
            try:
                return int(float(text[: -len(suffix)]) * unit)
            except ValueError:
                break
    try:
        return int(float(text) * GiB)
    except ValueError:
        raise ScenarioError(field, value, "is not a size", "write e.g. 256GB or 128GiB") from None


def parse_parts(field: str, value: Any) -> tuple[Part, ...]:
    """A list of part names (llm, vision, vision_aux, projector)."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    parts: list[Part] = []
    for item in items:
        name = str(item).strip().lower().replace("-", "_")
        name = {"mm_projector": "projector", "connector": "projector", "vision_tower": "vision"}.get(name, name)
        try:
            parts.append(Part(name))
        except ValueError:
            raise ScenarioError(field, item, "unknown part", "use llm, vision, vision_aux, projector") from None
    return tuple(parts)


def parse_image_size(field: str, value: Any) -> tuple[int, int]:
    """``[width, height]``, ``"WxH"`` or one number (a square) -> (width, height) in pixels."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+)\s*)?", value.lower())
        if m is None:
            raise ScenarioError(field, value, "must be [width, height] in pixels", "e.g. [1120, 896] or 1120x896")
        parts: list[Any] = [m.group(1), m.group(2) or m.group(1)]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value, value]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ScenarioError(field, value, "must be [width, height] in pixels", "e.g. [1120, 896] or 1120x896")
    width, height = (parse_int(field, p) for p in parts)
    if width is None or height is None or width < 1 or height < 1:
        raise ScenarioError(field, value, "must be positive pixel sizes", "e.g. [1120, 896]")
    return width, height


def train_from_dict(data: Mapping[str, Any]) -> TrainSpec:
    """``train:`` section -> TrainSpec."""
    _check_keys("train", data, TRAIN_KEYS)
    kwargs: dict[str, Any] = {}
    enums: dict[str, type[Choice]] = {
        "method": Method, "precision": Precision, "optimizer": Optimizer, "grad_ckpt": GradCkpt,
        "attention": Attention, "loss": Loss,
    }
    for key, enum in enums.items():
        if key in data:
            value = data[key]
            if key == "grad_ckpt" and isinstance(value, bool):
                value = "full" if value else "none"
            kwargs[key] = enum.parse(f"train.{key}", value)
    for key in ("micro_batch", "grad_accum", "seq_len", "images_per_sample"):
        if key in data:
            kwargs[key] = parse_int(f"train.{key}", data[key])
    if data.get("image_size") is not None:
        kwargs["image_size"] = parse_image_size("train.image_size", data["image_size"])
    if "trainable" in data:
        kwargs["trainable"] = parse_parts("train.trainable", data["trainable"])
    if "lora" in data:
        lora = _section(data, "lora")
        _check_keys("train.lora", lora, LORA_KEYS)
        lk: dict[str, Any] = {}
        if "r" in lora:
            lk["r"] = parse_int("train.lora.r", lora["r"])
        if "alpha" in lora:
            lk["alpha"] = parse_int("train.lora.alpha", lora["alpha"])
        if "dropout" in lora:
            lk["dropout"] = float(lora["dropout"])
        if "targets" in lora:
            t = lora["targets"]
            lk["targets"] = tuple(x.strip() for x in (t.split(",") if isinstance(t, str) else t))
        kwargs["lora"] = LoraSpec(**lk)
    return TrainSpec(**kwargs)


def parallel_from_dict(data: Mapping[str, Any]) -> ParallelSpec:
    """``parallel:`` section -> ParallelSpec."""
    _check_keys("parallel", data, PARALLEL_KEYS)
    kwargs: dict[str, Any] = {}
    if "engine" in data:
        kwargs["engine"] = Engine.parse("parallel.engine", data["engine"])
    for key in ("offload_optimizer", "offload_param"):
        if key in data:
            value = data[key]
            if value in (None, False):
                value = "none"
            kwargs[key] = Offload.parse(f"parallel.{key}", value)
    if "fsdp_sharding" in data:
        kwargs["fsdp_sharding"] = FsdpSharding.parse("parallel.fsdp_sharding", data["fsdp_sharding"])
    for key in ("zero", "tp", "pp", "ep"):
        if key in data:
            kwargs[key] = parse_int(f"parallel.{key}", data[key])
    if "expandable_segments" in data:
        kwargs["expandable_segments"] = parse_bool("parallel.expandable_segments", data["expandable_segments"])
    if "deepspeed" in data:
        ds = _section(data, "deepspeed")
        _check_keys("parallel.deepspeed", ds, DEEPSPEED_KEYS)
        dk: dict[str, Any] = {}
        for key, value in ds.items():
            field = f"parallel.deepspeed.{key}"
            if key == "grad_accum_dtype":
                dk[key] = parse_grad_accum_dtype(field, value)
            elif key in ("overlap_comm", "contiguous_gradients", "moe_leaf_modules", "zero_init", "pin_memory"):
                if key == "overlap_comm" and (value is None or str(value).lower() == "auto"):
                    dk[key] = None
                else:
                    dk[key] = parse_bool(field, value)
            else:
                dk[key] = parse_int(field, value, allow_auto=key in AUTO_KEYS)
        kwargs["deepspeed"] = DeepSpeedKnobs(**dk)
    return ParallelSpec(**kwargs)


def scenario_from_dict(data: Mapping[str, Any], model: ModelSpec | None = None) -> Scenario:
    """A full scenario dict -> Scenario. ``model`` skips loading ``data['model']`` when given."""
    from ..registry import load_model, parse_gpus

    if not isinstance(data, Mapping):
        raise ScenarioError("scenario", type(data).__name__, "must be a mapping at the top level")
    _check_keys("", data, TOP_KEYS)
    if model is None:
        ref = data.get("model")
        if not ref:
            raise ScenarioError("model", ref, "is required", "give a preset (vramplan models), a config.json path or a Hub id")
    train = train_from_dict(_section(data, "train"))
    if model is None:  # a given model already reflects the image size (it was built for this scenario)
        model = load_model(str(ref), image_size=train.image_size)
    if not model.is_vlm and "images_per_sample" not in _section(data, "train"):
        train = replace(train, images_per_sample=0)
    hw = _section(data, "hardware")
    _check_keys("hardware", hw, HARDWARE_KEYS)
    gpu_text = str(hw.get("gpu", "a100-80g"))
    gpu, count = parse_gpus(gpu_text)
    gpus_per_node = parse_int("hardware.gpus_per_node", hw["gpus_per_node"]) if "gpus_per_node" in hw else count
    nodes = parse_int("hardware.nodes", hw.get("nodes", 1))
    host = parse_size_bytes("hardware.host_ram_gb", hw["host_ram_gb"]) if hw.get("host_ram_gb") is not None else None
    if isinstance(hw.get("host_ram_gb"), (int, float)):
        host = int(hw["host_ram_gb"] * GB)
    cluster = ClusterSpec(gpu=gpu, gpus_per_node=gpus_per_node or 1, nodes=nodes or 1, host_ram_bytes=host)
    par_data = dict(_section(data, "parallel"))
    if "engine" not in par_data and cluster.world_size == 1:
        par_data.setdefault("engine", "single")
    parallel = parallel_from_dict(par_data)
    headroom = float(data.get("headroom", 0.03))
    profile = None
    if data.get("model"):  # a stored `vramplan calibrate` profile of this model under these settings, if any
        from .profile_file import find_profile, settings_key

        settings = settings_key(train.precision.value, train.attention.value, train.method.value)
        profile = find_profile(str(data["model"]), settings)
    return Scenario(model=model, train=train, cluster=cluster, parallel=parallel, headroom_fraction=headroom,
                    activation_profile=profile)


def gpu_ref(gpu_id: str, memory_bytes: int) -> str:
    """How a scenario file names a GPU: its catalog id, or its size for a custom GPU (``24GiB``)."""
    if not gpu_id.startswith("custom"):
        return gpu_id
    if memory_bytes % GiB == 0:
        return f"{memory_bytes // GiB}GiB"
    if memory_bytes % GB == 0:
        return f"{memory_bytes // GB}GB"
    return f"{memory_bytes / GiB!r}GiB"


def _knob(value: int | None) -> int | str:
    return "auto" if value is None else value


def scenario_to_dict(scn: Scenario, model_ref: str | None = None) -> dict[str, Any]:
    """Scenario -> the file schema (round-trips through ``scenario_from_dict``)."""
    t, c, p = scn.train, scn.cluster, scn.parallel
    ds = p.deepspeed
    out: dict[str, Any] = {
        "model": model_ref or scn.model.name,
        "train": {
            "method": t.method.value,
            "trainable": [part.value for part in t.trainable],
            "precision": t.precision.value,
            "optimizer": t.optimizer.value,
            "micro_batch": t.micro_batch,
            "grad_accum": t.grad_accum,
            "seq_len": t.seq_len,
            "images_per_sample": t.images_per_sample,
            **({"image_size": list(t.image_size)} if t.image_size is not None else {}),
            "grad_ckpt": t.grad_ckpt.value,
            "attention": t.attention.value,
            "loss": t.loss.value,
        },
        "hardware": {
            "gpu": gpu_ref(c.gpu.id, c.gpu.memory_bytes),
            "gpus_per_node": c.gpus_per_node,
            "nodes": c.nodes,
            "host_ram_gb": None if c.host_ram_bytes is None else c.host_ram_bytes / GB,
        },
        "parallel": {
            "engine": p.engine.value,
            "zero": p.zero,
            "offload_optimizer": p.offload_optimizer.value,
            "offload_param": p.offload_param.value,
            "tp": p.tp,
            "pp": p.pp,
            "ep": p.ep,
            "fsdp_sharding": p.fsdp_sharding.value,
            "expandable_segments": p.expandable_segments,
            "deepspeed": {
                "reduce_bucket_size": _knob(ds.reduce_bucket_size),
                "allgather_bucket_size": ds.allgather_bucket_size,
                "overlap_comm": "auto" if ds.overlap_comm is None else ds.overlap_comm,
                "contiguous_gradients": ds.contiguous_gradients,
                "stage3_prefetch_bucket_size": _knob(ds.stage3_prefetch_bucket_size),
                "stage3_param_persistence_threshold": _knob(ds.stage3_param_persistence_threshold),
                "stage3_max_live_parameters": ds.stage3_max_live_parameters,
                "stage3_max_reuse_distance": ds.stage3_max_reuse_distance,
                "sub_group_size": ds.sub_group_size,
                "moe_leaf_modules": ds.moe_leaf_modules,
                "zero_init": ds.zero_init,
                "pin_memory": ds.pin_memory,
                **({"grad_accum_dtype": ds.grad_accum_dtype} if ds.grad_accum_dtype is not None else {}),
            },
        },
        "headroom": scn.headroom_fraction,
    }
    if t.method in (Method.LORA, Method.QLORA):
        out["train"]["lora"] = {
            "r": t.lora.r, "alpha": t.lora.alpha, "targets": list(t.lora.targets), "dropout": t.lora.dropout,
        }
    return out
