"""Analytical estimate against the trace of the same scenario: per phase and per component.

Owns ``compare_scenario`` and the error definitions the cross-validation suite (tests/torch/test_crossval.py),
``plan --verify`` and docs/tracing.md use:

- what is compared: the allocated bytes the trace can see, i.e. every allocated key except
  ``overhead/cublas`` (cuBLAS workspaces come from the CUDA runtime, not from aten ops, and are the same
  constant on both sides);
- phase error: ``(analytic - traced) / traced`` of a phase's allocated bytes at its peak;
- component error, for the groups ``model_states``, ``activations`` and ``buffers+temporaries`` (where the
  tracer and the formulas file the same byte under neighbouring keys, e.g. FSDP's unsharded gradients):
  ``(analytic - traced) / max(traced, COMPONENT_FLOOR x traced phase total)`` — a plain relative error for
  a material component, and relative to a tenth of the phase for a small one (so that 1 MiB on a 10 KiB
  component does not read as 10,000 %).

Imports ``vramplan.core`` and ``.run`` (torch through it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.estimate import PHASES, Estimate, estimate_scenario
from ..core.scenario import Scenario

COMPONENTS: dict[str, tuple[str, ...]] = {
    "model_states": ("model_states",),
    "activations": ("activations",),
    "buffers+temporaries": ("buffers", "temporaries"),
}
COMPONENT_FLOOR = 0.10
"""A component smaller than this share of its phase is compared relative to the share instead."""
NOT_TRACEABLE = frozenset({"overhead/cublas"})


def _visible(items: dict[str, int]) -> int:
    return sum(v for k, v in items.items() if k.split("/")[0] != "overhead" and k not in NOT_TRACEABLE)


def _group(items: dict[str, int], prefixes: tuple[str, ...]) -> int:
    return sum(v for k, v in items.items() if k.split("/")[0] in prefixes)


@dataclass(frozen=True, slots=True)
class PhaseComparison:
    """One phase: analytic and traced allocated bytes, overall and per component."""

    phase: str
    analytic_bytes: int
    traced_bytes: int
    components: dict[str, tuple[int, int]]
    """component -> (analytic bytes, traced bytes)."""

    @property
    def error(self) -> float:
        """(analytic - traced) / traced."""
        return (self.analytic_bytes - self.traced_bytes) / max(1, self.traced_bytes)

    def component_error(self, name: str) -> float:
        """(analytic - traced) / max(traced, COMPONENT_FLOOR x traced phase)."""
        a, t = self.components[name]
        return (a - t) / max(1, t, int(COMPONENT_FLOOR * self.traced_bytes))


@dataclass(frozen=True, slots=True)
class Comparison:
    """A scenario's analytic estimate next to its trace."""

    scenario: Scenario
    analytic: Estimate
    traced: Estimate
    phases: tuple[PhaseComparison, ...]
    wall_seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def worst(self) -> float:
        """Largest |error| over phases and components."""
        errs = [abs(p.error) for p in self.phases]
        errs += [abs(p.component_error(c)) for p in self.phases for c in COMPONENTS]
        return max(errs)


def compare_estimates(scn: Scenario, analytic: Estimate, traced: Estimate, wall: float = 0.0,
                      notes: tuple[str, ...] = ()) -> Comparison:
    """Compare two estimates of the same scenario phase by phase (module docstring)."""
    phases = []
    for ph in PHASES:
        a = next(p for p in analytic.phases if p.phase == ph).breakdown.as_dict()
        t = next(p for p in traced.phases if p.phase == ph).breakdown.as_dict()
        comps = {name: (_group(a, pre), _group(t, pre)) for name, pre in COMPONENTS.items()}
        phases.append(PhaseComparison(ph, _visible(a), _visible(t), comps))
    return Comparison(scenario=scn, analytic=analytic, traced=traced, phases=tuple(phases), wall_seconds=wall,
                      notes=notes)


def compare_scenario(scn: Scenario, config: dict[str, Any], *, resolve_tower: Any = None) -> Comparison:
    """Trace ``scn`` (its model from the HF ``config`` dict) and compare with its analytical estimate."""
    from .run import to_estimate, trace_scenario

    result = trace_scenario(scn, config, resolve_tower=resolve_tower)
    return compare_estimates(scn, estimate_scenario(scn), to_estimate(result), result.wall_seconds,
                             tuple(result.notes))
