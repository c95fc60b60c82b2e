"""Built-in scenarios (``registry/scenarios/*.yaml``): the reports vramplan starts from, runnable offline."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def builtin_scenario_names() -> list[str]:
    """Names of the embedded scenarios."""
    folder = resources.files("vramplan.registry").joinpath("scenarios")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def builtin_scenario(name: str) -> dict[str, Any]:
    """The scenario dict of a built-in scenario."""
    text = resources.files("vramplan.registry").joinpath("scenarios", f"{name}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"built-in scenario {name} is not a mapping"
    return data
