"""The prediction a run is held against, and measured-vs-predicted comparisons.

Owns ``prediction_from``: a scenario (dict in the file schema, a scenario file path, a built-in
scenario name, a ``Scenario`` or an ``Estimate``) -> a compact JSON-ready prediction (per phase
``allocated_bytes``, ``reserved_bytes``, ``device_used_bytes`` and breakdown; capacity, usable bytes),
and ``compare``: per phase and metric, measured, predicted and the relative error. Imports the
public API and the adapters; never torch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.errors import VramplanError
from ..core.estimate import Estimate
from ..core.scenario import Scenario

PHASES = ("forward", "backward", "optimizer")
METRICS = (
    ("allocated", "peak_allocated_bytes", "allocated_bytes"),
    ("reserved", "peak_reserved_bytes", "reserved_bytes"),
    ("device_used", "device_used_bytes", "device_used_bytes"),
)
"""(metric name, measured field, predicted field)."""


def _scenario_dict(ref: str | Path) -> dict[str, Any]:
    from ..adapters.scenario_file import load_scenario_ref

    return load_scenario_ref(ref)


def estimate_of(scenario: Any) -> Estimate:
    """The vramplan estimate of ``scenario`` (see module docstring for the accepted forms)."""
    from ..api import estimate, estimate_from_dict

    if isinstance(scenario, Estimate):
        return scenario
    if isinstance(scenario, Scenario):
        return estimate(scenario)
    if isinstance(scenario, (str, Path)):
        scenario = _scenario_dict(scenario)
    if isinstance(scenario, Mapping):
        data = copy.deepcopy(dict(scenario))
        data.pop("name", None)
        data.pop("description", None)
        return estimate_from_dict(data)
    raise VramplanError(f"scenario={type(scenario).__name__}: give a scenario dict, a scenario file path, "
                        "a built-in scenario name, a Scenario or an Estimate")


def prediction_from(scenario: Any) -> dict[str, Any]:
    """Compact JSON-ready prediction of ``scenario`` (every number int bytes)."""
    from ..report.json_report import estimate_to_dict

    est = estimate_of(scenario)
    full = estimate_to_dict(est)
    return {
        "model": full["model"]["name"],
        "gpu": full["gpu"],
        "peak_phase": full["peak_phase"],
        "peak_allocated_bytes": full["peak_allocated_bytes"],
        "peak_reserved_bytes": full["peak_reserved_bytes"],
        "device_used_bytes": full["device_used_bytes"],
        "capacity_bytes": full["gpu"]["capacity_bytes"],
        "usable_bytes": full["gpu"]["usable_bytes"],
        "fits": full["fits"],
        "phases": full["phases"],
        "scenario": full["scenario"],
    }


def relative_error(measured: int | None, predicted: int | None) -> float | None:
    """(predicted - measured) / measured: positive when vramplan over-estimates."""
    if not measured or predicted is None:
        return None
    return (predicted - measured) / measured


def compare(measured_phases: Mapping[str, Mapping[str, Any]], prediction: Mapping[str, Any] | None) -> dict[str, Any]:
    """Per phase and metric: measured, predicted, relative error; plus the overall peaks."""
    if not prediction:
        return {}
    out: dict[str, Any] = {}
    pred_phases = prediction.get("phases", {})
    for phase in PHASES:
        meas = measured_phases.get(phase)
        pred = pred_phases.get(phase)
        if not meas or not pred:
            continue
        out[phase] = {
            name: {"measured_bytes": meas.get(m_key), "predicted_bytes": pred.get(p_key),
                   "error": relative_error(meas.get(m_key), pred.get(p_key))}
            for name, m_key, p_key in METRICS
        }
    overall: dict[str, Any] = {}
    for name, m_key, _ in METRICS:
        values = [p.get(m_key) for p in measured_phases.values() if p.get(m_key) is not None]
        measured = max(values) if values else None
        predicted = prediction.get({"allocated": "peak_allocated_bytes", "reserved": "peak_reserved_bytes",
                                    "device_used": "device_used_bytes"}[name])
        overall[name] = {"measured_bytes": measured, "predicted_bytes": predicted,
                         "error": relative_error(measured, predicted)}
    out["overall"] = overall
    return out
