"""Shared fixtures: build scenarios from the file schema without touching the network."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.core.estimate import Estimate, estimate_scenario
from vramplan.core.scenario import Scenario


def make_scenario(data: dict[str, Any], **model_kw: Any) -> Scenario:
    """Scenario from a dict in the scenario-file schema."""
    return scenario_from_dict(copy.deepcopy(data), **model_kw)


def estimate_dict(data: dict[str, Any]) -> Estimate:
    """Estimate of a scenario dict."""
    return estimate_scenario(make_scenario(data))


@pytest.fixture
def mgm2b_stage2() -> dict[str, Any]:
    """MGM-2B stage 2 on 4x RTX 4090 as the MGM scripts set it (built-in scenario)."""
    from vramplan.registry.scenario_presets import builtin_scenario

    data = builtin_scenario("mgm-2b-stage2")
    data.pop("name", None)
    data.pop("description", None)
    return data
