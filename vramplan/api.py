"""Public API: the functions the CLI, the web app and users call."""

from __future__ import annotations

from typing import Any, Mapping

from .adapters.scenario_file import scenario_from_dict
from .core.estimate import Estimate, estimate_scenario
from .core.scenario import Scenario


def load_scenario(data: Mapping[str, Any]) -> Scenario:
    """A scenario dict (file schema) -> Scenario (loads the model it names)."""
    return scenario_from_dict(data)


def estimate(scenario: Scenario) -> Estimate:
    """The analytical estimate of a scenario."""
    return estimate_scenario(scenario)


def estimate_from_dict(data: Mapping[str, Any]) -> Estimate:
    """Scenario dict -> estimate."""
    return estimate_scenario(scenario_from_dict(data))
