"""``plan --verify N``: re-check the top N plans by trace and show both numbers next to each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.errors import VramplanError
from ..report.units import gib


@dataclass(frozen=True, slots=True)
class VerifiedPlan:
    """One plan: its analytic device peak and, when it could be traced, the traced one."""

    rank: int
    setup: str
    analytic_bytes: int
    traced_bytes: int | None
    traced_fits: bool | None
    seconds: float
    reason: str = ""
    """Why it was not traced (tp/pp/ep, FSDP offload, remote-code family ...)."""


def verify_plans(result: Any, model_ref: str, top: int) -> list[VerifiedPlan]:
    """Trace the first ``top`` plans of ``result`` (a ``PlanResult``) whose model is ``model_ref``."""
    from ..core.planner.changes import engine_label
    from ..registry import load_config
    from ..tracing import TracingUnavailable, require_torch
    from ..tracing.run import to_estimate, trace_scenario

    if top < 1:
        raise VramplanError(f"--verify={top}: give the number of plans to trace (1 or more)")
    require_torch()
    config = load_config(model_ref, image_size=result.start.train.image_size)
    rows = []
    for rank, plan in enumerate(result.plans[:top], start=1):
        t = plan.scenario.train
        label = f"{engine_label(plan.scenario)}, {t.method.value}, mb {t.micro_batch}, ckpt {t.grad_ckpt.value}"
        try:
            traced = trace_scenario(plan.scenario, config)
        except TracingUnavailable:
            raise
        except VramplanError as exc:
            rows.append(VerifiedPlan(rank, label, plan.estimate.device_used_bytes, None, None, 0.0, str(exc)))
            continue
        est = to_estimate(traced)
        rows.append(VerifiedPlan(rank, label, plan.estimate.device_used_bytes, est.device_used_bytes, est.fits,
                                 traced.wall_seconds))
    return rows


def render_verified(rows: list[VerifiedPlan]) -> str:
    """The verification table (GiB per GPU, nvidia-smi peak)."""
    lines = ["Verified by trace (transformers on fake tensors; nvidia-smi peak per GPU, GiB):",
             f"  {'#':>2}  {'setup':<46} {'analytic':>9} {'traced':>9} {'diff':>7}  fits"]
    for r in rows:
        if r.traced_bytes is None:
            lines.append(f"  {r.rank:>2}  {r.setup:<46} {gib(r.analytic_bytes):>9} {'-':>9} {'':>7}  not traced: {r.reason}")
            continue
        diff = (r.analytic_bytes - r.traced_bytes) / max(1, r.traced_bytes)
        lines.append(f"  {r.rank:>2}  {r.setup:<46} {gib(r.analytic_bytes):>9} {gib(r.traced_bytes):>9} "
                     f"{100 * diff:>+6.1f}%  {'yes' if r.traced_fits else 'NO'} ({r.seconds:.0f} s)")
    return "\n".join(lines)


def verified_to_dict(rows: list[VerifiedPlan]) -> list[dict[str, Any]]:
    """JSON form (bytes as integers)."""
    return [{"rank": r.rank, "setup": r.setup, "analytic_device_used_bytes": r.analytic_bytes,
             "traced_device_used_bytes": r.traced_bytes, "traced_fits": r.traced_fits,
             "trace_seconds": round(r.seconds, 2), "not_traced_reason": r.reason or None} for r in rows]
