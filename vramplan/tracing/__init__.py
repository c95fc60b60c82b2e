"""Optional ``[torch]`` tracer: run the real transformers model on fake tensors and count every allocation.

Public API (torch and transformers are imported only when these are called; without them they raise
``TracingUnavailable`` with the ``pip install "vramplan[torch]"`` line)::

    from vramplan.tracing import trace_estimate_from_dict, trace_estimate, compare_from_dict, calibrate_from_dict

Modules: ``tracker`` (the lean allocation tracker), ``build``/``vlm``/``inputs`` (the model as it trains),
``engines``/``fsdp`` (replicated, ZeRO by equivalent accounting, FSDP2 with a fake process group),
``optim`` (the scenario's optimizer), ``patches`` (CPU-vs-CUDA differences), ``run`` (two steps -> an
``Estimate``), ``compare`` (analytic vs traced), ``calibrate`` (per-token layer profiles). See docs/tracing.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.estimate import Estimate
from ..core.scenario import Scenario
from ._deps import INSTALL_LINE, TracingUnavailable, require_torch

__all__ = [
    "INSTALL_LINE", "TracingUnavailable", "calibrate_from_dict", "compare_from_dict", "require_torch",
    "trace_estimate", "trace_estimate_from_dict",
]


def trace_estimate(scenario: Scenario, config: Mapping[str, Any]) -> Estimate:
    """The traced estimate of ``scenario`` whose model is the Hugging Face ``config`` dict."""
    require_torch()
    from .run import trace_estimate as _trace

    return _trace(scenario, dict(config))


def _scenario_and_config(data: Mapping[str, Any]) -> tuple[Scenario, dict[str, Any], str]:
    from ..adapters.scenario_file import scenario_from_dict
    from ..registry import load_config

    scn = scenario_from_dict(data)
    ref = str(data["model"])
    return scn, load_config(ref, image_size=scn.train.image_size), ref


def trace_estimate_from_dict(data: Mapping[str, Any]) -> Estimate:
    """Scenario dict (file schema) -> traced estimate (the model config is resolved like ``load_model``)."""
    require_torch()
    scn, config, _ref = _scenario_and_config(data)
    return trace_estimate(scn, config)


def compare_from_dict(data: Mapping[str, Any]) -> Any:
    """Scenario dict -> ``vramplan.tracing.compare.Comparison`` (analytic next to traced)."""
    require_torch()
    from .compare import compare_scenario

    scn, config, _ref = _scenario_and_config(data)
    return compare_scenario(scn, config)


def calibrate_from_dict(data: Mapping[str, Any], *, layers: int = 2) -> Any:
    """Scenario dict -> ``vramplan.tracing.calibrate.Calibration`` (not stored; see ``adapters.profile_file``)."""
    require_torch()
    from .calibrate import calibrate

    scn, config, ref = _scenario_and_config(data)
    return calibrate(scn, config, ref, layers=layers)
