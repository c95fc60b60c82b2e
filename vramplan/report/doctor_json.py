"""DoctorReport -> JSON-ready dict (``vramplan doctor --json``); every number in bytes (int)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..adapters.scenario_file import scenario_to_dict
from ..core.breakdown import KEYS
from .json_report import estimate_to_dict

if TYPE_CHECKING:
    from ..doctor.diagnose import DoctorReport
    from ..doctor.prescribe import Option

SCHEMA_VERSION = 1


def option_to_dict(option: Option, model_ref: str) -> dict[str, Any]:
    """One fix or alternative."""
    est = option.estimate
    return {
        "ids": list(option.ids),
        "kind": option.kind,
        "title": option.title,
        "cost": option.cost,
        "fits": option.fits,
        "fits_gpu": est.fits_gpu,
        "fits_host": est.fits_host,
        "peak_bytes": est.device_used_bytes,
        "usable_bytes": est.usable_bytes,
        "margin_bytes": est.margin_bytes,
        "saved_bytes": option.saved_bytes,
        "host_ram_bytes": est.host_ram_bytes,
        "hardware": option.hardware or None,
        "changes": [c.as_dict() for c in option.changes],
        "notes": list(option.notes),
        "scenario": scenario_to_dict(option.scenario, model_ref),
    }


def doctor_to_dict(report: DoctorReport) -> dict[str, Any]:
    """The whole report."""
    ctx = report.context
    launch = ctx.launch
    est = ctx.estimate
    peak = est.peak.breakdown
    ranked = report.prescription.ranked
    best = report.prescription.best
    ds = ctx.ds
    return {
        "schema_version": SCHEMA_VERSION,
        "script": report.script_path,
        "command": None if launch is None else {
            "index": launch.command_index, "count": launch.num_commands, "line": launch.line,
            "launcher": launch.launcher, "entry": launch.entry, "gpu_count_source": launch.gpu_count_source,
            "gpus_per_node": launch.gpus_per_node, "nodes": launch.nodes,
            "unknown_flags": list(launch.unknown_flags), "warnings": list(launch.warnings),
            "deepspeed_config": launch.deepspeed_config,
        },
        "model": {"ref": ctx.model_ref, "how": ctx.model_how},
        "deepspeed": None if ds is None else {
            "source": ds.source, "zero_stage": ds.zero_stage, "offload_optimizer": ds.offload_optimizer,
            "offload_param": ds.offload_param, "overlap_comm": ds.overlap_comm,
            "reduce_bucket_size": ds.reduce_bucket_size, "allgather_bucket_size": ds.allgather_bucket_size,
            "stage3_prefetch_bucket_size": ds.stage3_prefetch_bucket_size,
            "stage3_param_persistence_threshold": ds.stage3_param_persistence_threshold,
            "bf16": ds.bf16_enabled, "fp16": ds.fp16_enabled, "train_batch_size": ds.train_batch_size,
            "train_micro_batch_size_per_gpu": ds.train_micro_batch_size_per_gpu,
            "gradient_accumulation_steps": ds.gradient_accumulation_steps, "auto_keys": list(ds.auto_keys),
            "mismatches": list(ds.mismatches),
        },
        "host_ram": {"bytes": ctx.host_ram_bytes, "assumed": ctx.host_ram_assumed},
        "notes": list(ctx.notes),
        "verdict": {
            "fits": est.fits, "fits_gpu": est.fits_gpu, "fits_host": est.fits_host,
            "device_used_bytes": est.device_used_bytes, "usable_bytes": est.usable_bytes,
            "margin_bytes": est.margin_bytes, "peak_phase": est.peak_phase,
            "largest": [[k, peak[k]] for k in sorted(KEYS, key=lambda k: -peak[k])[:3] if peak[k]],
        },
        "estimate": estimate_to_dict(est, ctx.model_ref),
        "findings": [f.as_dict() for f in report.findings],
        "fixes": [option_to_dict(o, ctx.model_ref) for o in ranked],
        "recommended": None if best is None else ranked.index(best),
        "any_fix_fits": best is not None,
        "searched": report.prescription.searched,
        "alternatives": [option_to_dict(o, ctx.model_ref) for o in sorted(report.alternatives, key=lambda o: o.rank_key())],
    }
