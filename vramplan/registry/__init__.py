"""Registry: the data vramplan ships (model presets, vision towers, GPUs) and its loaders.

Data lives next to this file as package data (``models/*.json``, ``towers/*.json``, ``gpus.json``) and is
read with ``importlib.resources``. Loaders return core types (``ModelSpec``, ``GPUSpec``). This package
imports ``vramplan.core``; ``load_preset``/``load_model`` import ``vramplan.adapters.hf_config`` inside the
function to parse configs (the adapters read tower data from here, so neither imports the other at load).
"""

from .gpus import custom_gpu, list_gpus, load_gpu, parse_gpus
from .presets import (
    HubError, PresetInfo, list_presets, load_config, load_model, load_preset, preset_info, resolve_preset_id,
)
from .towers import find_tower_config, tower_ids

__all__ = [
    "HubError",
    "PresetInfo",
    "custom_gpu",
    "find_tower_config",
    "list_gpus",
    "list_presets",
    "load_config",
    "load_gpu",
    "load_model",
    "load_preset",
    "parse_gpus",
    "preset_info",
    "resolve_preset_id",
    "tower_ids",
]
