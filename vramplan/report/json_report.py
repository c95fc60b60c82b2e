"""Estimate -> JSON-ready dict (the ``--json`` schema documented in the README)."""

from __future__ import annotations

from typing import Any

from ..adapters.scenario_file import scenario_to_dict
from ..core.estimate import Estimate

SCHEMA_VERSION = 1


def estimate_to_dict(est: Estimate, model_ref: str | None = None, method: str = "analytic") -> dict[str, Any]:
    """Every number in bytes (int); keys are stable across analytic, traced and measured estimates."""
    scn = est.scenario
    return {
        "schema_version": SCHEMA_VERSION,
        "method": method,
        "scenario": scenario_to_dict(scn, model_ref),
        "model": {
            "name": scn.model.name,
            "total_params": est.params.total,
            "active_params": est.params.active,
            "trainable_params": est.params.trainable,
            "frozen_params": est.params.frozen,
            "rank_trainable_params": est.params.rank_trainable,
            "rank_frozen_params": est.params.rank_frozen,
        },
        "gpu": {
            "id": scn.cluster.gpu.id,
            "name": scn.cluster.gpu.display_name,
            "count": scn.cluster.world_size,
            "capacity_bytes": est.capacity_bytes,
            "headroom_bytes": est.headroom_bytes,
            "usable_bytes": est.usable_bytes,
        },
        "peak_phase": est.peak_phase,
        "peak_allocated_bytes": est.peak_allocated_bytes,
        "peak_reserved_bytes": est.peak_reserved_bytes,
        "device_used_bytes": est.device_used_bytes,
        "margin_bytes": est.margin_bytes,
        "fits": est.fits,
        "fits_gpu": est.fits_gpu,
        "fits_host": est.fits_host,
        "breakdown": est.peak.breakdown.as_dict(),
        "phases": {
            p.phase: {
                "allocated_bytes": p.allocated_bytes,
                "reserved_bytes": p.reserved_bytes,
                "device_used_bytes": p.device_used_bytes,
                "breakdown": p.breakdown.as_dict(),
            }
            for p in est.phases
        },
        "host": {
            "host_ram_bytes": est.host_ram_bytes,
            "available_bytes": scn.cluster.host_ram_bytes,
            "breakdown": dict(est.host),
        },
        "notes": list(est.notes),
    }
