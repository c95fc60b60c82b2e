"""Validating what the page sends: form fields -> a scenario dict (file schema) and a model, within limits.

Owns the input limits of ``vramplan serve``: which fields exist, their types, lengths and numeric ranges;
preset, GPU and built-in scenario names checked against the registry (so no client string is ever
used as a file path); an uploaded ``config.json`` taken as text and parsed as JSON (never executed).
Every problem raises ``FormError`` (a ``VramplanError``) naming the field, shown in the page as is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import api
from ..core.errors import VramplanError

MAX_CONTENT_BYTES = 2 * 1024 * 1024
"""Largest request body (Flask ``MAX_CONTENT_LENGTH``)."""
MAX_CONFIG_CHARS = 1024 * 1024
"""Largest uploaded config.json."""
MAX_SCRIPT_CHARS = 64 * 1024
"""Largest pasted launch script."""
MAX_DS_JSON_CHARS = 256 * 1024
"""Largest pasted DeepSpeed JSON."""
MAX_TEXT_CHARS = 64
"""Largest plain text field (names, choices)."""

INT_RANGES: dict[str, tuple[int, int]] = {
    "gpus_per_node": (1, 64),
    "nodes": (1, 1024),
    "micro_batch": (1, 4096),
    "grad_accum": (1, 65536),
    "seq_len": (1, 1_048_576),
    "images_per_sample": (0, 64),
    "zero": (0, 3),
    "lora_r": (1, 4096),
    "tp": (1, 64),
    "pp": (1, 256),
    "ep": (1, 256),
    "global_batch": (1, 1_048_576),
    "host_ram_gb": (1, 1_000_000),
    "plan_rank": (1, 1000),
    "top": (1, 50),
    "fix_choice": (1, 1000),
}
"""Numeric fields and their inclusive ranges."""

TRAIN_CHOICES = ("method", "precision", "optimizer", "grad_ckpt", "attention", "loss")
PARALLEL_CHOICES = ("engine", "offload_optimizer", "offload_param", "fsdp_sharding")
TEXT_FIELDS = {"base", "model", "gpu", "plan_method", *TRAIN_CHOICES, *PARALLEL_CHOICES}
BIG_TEXT_FIELDS = {"config_json": MAX_CONFIG_CHARS, "config_name": MAX_TEXT_CHARS, "script": MAX_SCRIPT_CHARS,
                   "ds_json": MAX_DS_JSON_CHARS}
ALL_FIELDS = TEXT_FIELDS | set(BIG_TEXT_FIELDS) | set(INT_RANGES)


class FormError(VramplanError):
    """A field of the web form is missing, too long, out of range or unknown."""


@dataclass(frozen=True, slots=True)
class Form:
    """Checked fields: ``text`` (stripped strings), ``ints`` and the uploaded config (parsed JSON)."""

    text: Mapping[str, str]
    ints: Mapping[str, int]
    config: Mapping[str, Any] | None = None
    config_name: str = "uploaded"

    def get(self, name: str) -> str:
        """A text field, '' when absent."""
        return self.text.get(name, "")


def parse_form(body: Any) -> Form:
    """Type, length and range checks of a request body (a JSON object)."""
    if not isinstance(body, Mapping):
        raise FormError("the request body must be a JSON object of form fields")
    unknown = sorted(set(body) - ALL_FIELDS)
    if unknown:
        raise FormError(f"unknown field {str(unknown[0])[:MAX_TEXT_CHARS]!r}; valid fields: {', '.join(sorted(ALL_FIELDS))}")
    text: dict[str, str] = {}
    ints: dict[str, int] = {}
    for name, value in body.items():
        if value is None or value == "":
            continue
        if name in INT_RANGES:
            ints[name] = _int_field(name, value)
        else:
            limit = BIG_TEXT_FIELDS.get(name, MAX_TEXT_CHARS)
            if not isinstance(value, str):
                raise FormError(f"{name}: must be text")
            if len(value) > limit:
                raise FormError(f"{name}: {len(value)} characters is over the limit of {limit}; shorten it")
            text[name] = value if name in ("script", "ds_json", "config_json") else value.strip()
    config = None
    if "config_json" in text:
        config = parse_json_object("config_json", text.pop("config_json"), "config.json")
    name = text.pop("config_name", "") or "uploaded"
    return Form(text=text, ints=ints, config=config, config_name=_safe_label(name))


def _int_field(name: str, value: Any) -> int:
    lo, hi = INT_RANGES[name]
    if isinstance(value, bool):
        raise FormError(f"{name}: must be a whole number, not true/false")
    if isinstance(value, str):
        if len(value) > 20:
            raise FormError(f"{name}: too long for a number")
        try:
            value = float(value.strip())
        except ValueError:
            raise FormError(f"{name}={value!r}: not a number") from None
    if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value) or value != int(value):
        raise FormError(f"{name}={value!r}: must be a whole number")
    number = int(value)
    if not lo <= number <= hi:
        raise FormError(f"{name}={number}: must be between {lo} and {hi}")
    return number


def parse_json_object(field: str, text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormError(f"{field}: the {what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise FormError(f"{field}: the {what} is nested too deeply") from None
    if not isinstance(data, dict):
        raise FormError(f"{field}: the {what} must hold a JSON object {{...}}")
    return data


def _safe_label(name: str) -> str:
    """A display label from an uploaded file's name (letters, digits, - _ . only)."""
    label = "".join(c for c in name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1] if c.isalnum() or c in "-_.")
    return label[:MAX_TEXT_CHARS] or "uploaded"


def _one_of(field: str, value: str, valid: list[str] | set[str]) -> str:
    if value not in valid:
        shown = ", ".join(sorted(valid)[:40])
        raise FormError(f"{field}={value!r}: unknown; use one of: {shown}")
    return value


def preset_ids() -> list[str]:
    """Model presets the page may name."""
    from ..registry import list_presets

    return [p.id for p in list_presets()]


def gpu_ids() -> list[str]:
    """Catalog GPUs the page may name."""
    from ..registry import list_gpus

    return [g.id for g in list_gpus()]


def scenario_names() -> list[str]:
    """Built-in scenarios the page may start from."""
    from ..registry.scenario_presets import builtin_scenario_names

    return builtin_scenario_names()


def scenario_dict(form: Form) -> tuple[dict[str, Any], Any]:
    """(scenario dict, ModelSpec or None) from the form: a built-in base, then the fields on top.

    The model is a preset id (the dict names it) or the uploaded config (returned as a ModelSpec, and
    the dict names it by the upload's label).
    """
    from ..registry.scenario_presets import builtin_scenario

    data: dict[str, Any] = {}
    base = form.get("base")
    if base:
        data = builtin_scenario(_one_of("base", base, scenario_names()))
        data.pop("name", None)
        data.pop("description", None)
    train = dict(data.get("train") or {})
    hw = dict(data.get("hardware") or {})
    par = dict(data.get("parallel") or {})
    model = None
    if form.config is not None:
        model = api.model_from_config(form.config, name=form.config_name)
        data["model"] = form.config_name
    elif form.get("model"):
        data["model"] = _one_of("model", form.get("model"), preset_ids())
    if not data.get("model"):
        raise FormError("model: pick a preset, a built-in scenario, or upload a config.json")
    if form.get("gpu"):
        hw["gpu"] = _one_of("gpu", form.get("gpu"), gpu_ids())
    for key in ("gpus_per_node", "nodes", "host_ram_gb"):
        if key in form.ints:
            hw[key] = form.ints[key]
    for key in TRAIN_CHOICES:
        if form.get(key):
            train[key] = form.get(key)
    for key in ("micro_batch", "grad_accum", "seq_len", "images_per_sample"):
        if key in form.ints:
            train[key] = form.ints[key]
    if "lora_r" in form.ints:
        train["lora"] = {**dict(train.get("lora") or {}), "r": form.ints["lora_r"]}
    for key in PARALLEL_CHOICES:
        if form.get(key):
            par[key] = form.get(key)
    for key in ("zero", "tp", "pp", "ep"):
        if key in form.ints:
            par[key] = form.ints[key]
    world = int(hw.get("gpus_per_node", 1) or 1) * int(hw.get("nodes", 1) or 1)
    if not form.get("engine") and world > 1 and par.get("engine") in (None, "single"):
        par["engine"] = "deepspeed"
    data.update(train=train, hardware=hw, parallel=par)
    return data, model
