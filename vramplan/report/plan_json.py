"""PlanResult -> the ``vramplan plan --json`` dict.

Schema (bytes as ints, seconds as floats)::

    {"schema_version", "global_batch", "searched": {"families", "estimates"},
     "start": <estimate_to_dict>,
     "plans": [{"rank", "scenario": <scenario_to_dict>, "estimate": <estimate_to_dict>,
                "step_time": {...}, "changes": [...], "notes": [...]}],
     "rejected": [{"scenario", "kind", "component", "component_bytes", "over_by_bytes",
                   "device_used_bytes", "usable_bytes", "host_ram_bytes", "changes"}],
     "nearest": [...], "sizing": [...], "assumptions": [...], "notes": [...]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..adapters.scenario_file import scenario_to_dict
from ..core.planner import NearestOption, Plan, PlanResult, Rejection, Sizing
from ..core.steptime import StepTime
from .json_report import SCHEMA_VERSION, estimate_to_dict


def step_time_to_dict(st: StepTime) -> dict[str, Any]:
    """Every field of a StepTime."""
    return {
        "compute_s": st.compute_s, "comm_s": st.comm_s, "offload_s": st.offload_s, "optimizer_s": st.optimizer_s,
        "hidden_s": st.hidden_s, "total_s": st.total_s, "tokens_per_step": st.tokens_per_step,
        "tokens_per_s": st.tokens_per_s, "flops_per_rank": st.flops_per_rank, "assumptions": list(st.assumptions),
    }


def plan_to_dict(plan: Plan, rank: int, model_ref: str | None = None) -> dict[str, Any]:
    """One ranked plan."""
    return {
        "rank": rank,
        "scenario": scenario_to_dict(plan.scenario, model_ref),
        "estimate": estimate_to_dict(plan.estimate, model_ref),
        "step_time": step_time_to_dict(plan.step_time),
        "changes": list(plan.changes),
        "notes": list(plan.notes),
    }


def rejection_to_dict(rej: Rejection, model_ref: str | None = None) -> dict[str, Any]:
    """One rejected setup with why."""
    est = rej.estimate
    return {
        "scenario": scenario_to_dict(rej.scenario, model_ref),
        "kind": rej.kind,
        "component": rej.component,
        "component_bytes": rej.component_bytes,
        "over_by_bytes": rej.over_by_bytes,
        "device_used_bytes": est.device_used_bytes,
        "usable_bytes": est.usable_bytes,
        "host_ram_bytes": est.host_ram_bytes,
        "changes": list(rej.changes),
    }


def sizing_to_dict(s: Sizing, model_ref: str | None = None) -> dict[str, Any]:
    """Smallest GPU count of one type for one method."""
    return {
        "gpu": s.gpu.id,
        "method": s.method.value,
        "count": s.count,
        "max_gpus": s.max_gpus,
        "plan": plan_to_dict(s.plan, 1, model_ref) if s.plan is not None else None,
    }


def nearest_to_dict(o: NearestOption, model_ref: str | None = None) -> dict[str, Any]:
    """One nearest option."""
    return {
        "kind": o.kind,
        "plan": plan_to_dict(o.plan, 1, model_ref) if o.plan is not None else None,
        "rejection": rejection_to_dict(o.rejection, model_ref) if o.rejection is not None else None,
        "sizing": sizing_to_dict(o.sizing, model_ref) if o.sizing is not None else None,
        "host_ram_needed_bytes": o.host_ram_needed_bytes,
    }


def plan_result_to_dict(
    result: PlanResult,
    model_ref: str | None = None,
    nearest: Sequence[NearestOption] = (),
    sizing: Sequence[Sizing] = (),
) -> dict[str, Any]:
    """The whole ``--json`` document (module docstring)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "global_batch": result.global_batch,
        "searched": {"families": result.families, "estimates": result.evaluated},
        "start": estimate_to_dict(result.start_estimate, model_ref),
        "plans": [plan_to_dict(p, i, model_ref) for i, p in enumerate(result.plans, start=1)],
        "rejected": [rejection_to_dict(r, model_ref) for r in result.rejected],
        "nearest": [nearest_to_dict(o, model_ref) for o in nearest],
        "sizing": [sizing_to_dict(s, model_ref) for s in sizing],
        "assumptions": list(result.assumptions),
        "notes": list(result.notes),
    }


def sizing_result_to_dict(rows: Sequence[Sizing], global_batch: int, model_ref: str | None = None) -> dict[str, Any]:
    """``--gpu-type`` / ``--compare`` without a plan search: only the sizing rows."""
    return {
        "schema_version": SCHEMA_VERSION,
        "global_batch": global_batch,
        "plans": [],
        "rejected": [],
        "sizing": [sizing_to_dict(s, model_ref) for s in rows],
        "assumptions": [],
    }
