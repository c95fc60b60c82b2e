"""Scenarios the planner tests share (built offline from presets)."""

from __future__ import annotations

from typing import Any

from tests.conftest import make_scenario
from vramplan.core.scenario import Scenario
from vramplan.registry.scenario_presets import builtin_scenario


def builtin(name: str, **overrides: Any) -> Scenario:
    """A built-in scenario, with top-level sections updated by ``overrides`` (``hardware={...}``)."""
    data = builtin_scenario(name)
    data.pop("name", None)
    data.pop("description", None)
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return make_scenario(data)


def preset(model: str, gpus: str, count: int, *, host_ram_gb: float | None = None, **train: Any) -> Scenario:
    """A preset on ``count`` GPUs with the CLI's defaults (DeepSpeed ZeRO-2 on several GPUs)."""
    hw: dict[str, Any] = {"gpu": gpus, "gpus_per_node": count}
    if host_ram_gb is not None:
        hw["host_ram_gb"] = host_ram_gb
    data: dict[str, Any] = {"model": model, "hardware": hw, "train": dict(train),
                            "parallel": {"engine": "deepspeed" if count > 1 else "single"}}
    return make_scenario(data)
