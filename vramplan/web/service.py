"""What each endpoint of ``vramplan serve`` computes: checked form -> public API -> JSON-ready dict.

Calls ``vramplan.api``, ``vramplan.doctor`` (its public functions) and the public report functions only.
The doctor never reads files on the server: the DeepSpeed JSON comes pasted, the model from the form,
scripts naming a hostfile are refused, and the launch is parsed with no base folder.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from .. import __version__, api
from ..core.scenario import (
    Attention,
    Engine,
    FsdpSharding,
    GradCkpt,
    Loss,
    Method,
    Offload,
    Optimizer,
    Precision,
)
from ..report.html import estimate_section, verdict_html
from ..report.html_doctor import doctor_section
from ..report.html_plan import plan_section
from ..report.json_report import estimate_to_dict
from ..report.units import gib
from .forms import (
    INT_RANGES,
    MAX_CONFIG_CHARS,
    MAX_CONTENT_BYTES,
    MAX_DS_JSON_CHARS,
    MAX_SCRIPT_CHARS,
    Form,
    FormError,
    parse_json_object,
    preset_ids,
    scenario_dict,
    scenario_names,
)

PLAN_TOP = 5
"""Plans shown (and downloadable) per search."""


def options() -> dict[str, Any]:
    """Everything the page's selects offer, the built-in scenarios' values, and the limits."""
    from ..registry import list_gpus, list_presets
    from ..registry.scenario_presets import builtin_scenario

    scenarios = {}
    for name in scenario_names():
        data = builtin_scenario(name)
        train, hw, par = data.get("train") or {}, data.get("hardware") or {}, data.get("parallel") or {}
        scenarios[name] = {
            "description": data.get("description", ""), "model": data.get("model"),
            "gpu": hw.get("gpu"), "gpus_per_node": hw.get("gpus_per_node"), "nodes": hw.get("nodes", 1),
            "host_ram_gb": hw.get("host_ram_gb"),
            **{k: train.get(k) for k in ("method", "precision", "optimizer", "micro_batch", "grad_accum", "seq_len",
                                         "grad_ckpt", "attention", "loss")},
            **{k: par.get(k) for k in ("engine", "zero", "offload_optimizer", "offload_param")},
        }
    return {
        "version": __version__,
        "presets": [{"id": p.id, "name": p.display_name} for p in list_presets()],
        "gpus": [{"id": g.id, "name": g.display_name, "memory": gib(g.memory_bytes)} for g in list_gpus()],
        "scenarios": scenarios,
        "choices": {
            "method": [m.value for m in Method], "precision": [m.value for m in Precision],
            "optimizer": [m.value for m in Optimizer], "grad_ckpt": [m.value for m in GradCkpt],
            "attention": [m.value for m in Attention], "loss": [m.value for m in Loss],
            "engine": [m.value for m in Engine], "offload_optimizer": [m.value for m in Offload],
            "offload_param": [m.value for m in Offload], "fsdp_sharding": [m.value for m in FsdpSharding],
            "plan_method": ["", "any", "full", "lora", "qlora"],
        },
        "limits": {
            "ranges": INT_RANGES, "max_request_bytes": MAX_CONTENT_BYTES, "max_config_chars": MAX_CONFIG_CHARS,
            "max_script_chars": MAX_SCRIPT_CHARS, "max_ds_json_chars": MAX_DS_JSON_CHARS,
        },
    }


def _scenario(form: Form) -> tuple[Any, str]:
    data, model = scenario_dict(form)
    return api.load_scenario(data, model=model), str(data["model"])


def estimate_view(form: Form) -> dict[str, Any]:
    """The estimate of the form's setup: its JSON document, the verdict and the HTML section with charts."""
    scn, ref = _scenario(form)
    est = api.estimate(scn)
    return {
        "kind": "estimate", "verdict": "FITS" if est.fits else "OOM", "fits": est.fits,
        "estimate": estimate_to_dict(est, ref), "html": estimate_section(est),
    }


def _plan(form: Form) -> tuple[Any, str]:
    scn, ref = _scenario(form)
    choice = form.get("plan_method")
    if choice not in ("", "any", "full", "lora", "qlora"):
        raise FormError(f"plan_method={choice!r}: use any, full, lora or qlora (or leave it empty)")
    methods = ("full", "lora", "qlora") if choice == "any" else ((choice,) if choice else ())
    top = form.ints.get("top", PLAN_TOP)
    return api.plan(scn, global_batch=form.ints.get("global_batch"), methods=methods, top=top), ref


def plan_view(form: Form) -> dict[str, Any]:
    """The ranked plans (each with its downloadable files) and the HTML section with charts."""
    result, ref = _plan(form)
    nearest = api.nearest_options(result) if not result.plans else ()
    plans = []
    for rank, p in enumerate(result.plans, start=1):
        files = list(api.emit_texts(p.scenario, model_ref=ref))
        plans.append({"rank": rank, "changes": list(p.changes), "device_used_bytes": p.estimate.device_used_bytes,
                      "margin_bytes": p.estimate.margin_bytes, "step_time_s": p.step_time.total_s, "files": files})
    return {
        "kind": "plan", "fits": bool(result.plans), "global_batch": result.global_batch, "plans": plans,
        "start_verdict": "FITS" if result.start_estimate.fits else "OOM",
        "html": plan_section(result, nearest=nearest),
    }


def emit_view(form: Form) -> dict[str, Any]:
    """The files of plan ``plan_rank`` of the same search (or of the form's own setup without a rank)."""
    rank = form.ints.get("plan_rank")
    if rank is None:
        scn, ref = _scenario(form)
    else:
        result, ref = _plan(form)
        if rank > len(result.plans):
            raise FormError(f"plan_rank={rank}: the search found {len(result.plans)} plan(s); run the plan again")
        scn = result.plans[rank - 1].scenario
    return {"kind": "emit", "plan_rank": rank, "files": api.emit_texts(scn, model_ref=ref)}


_HOSTFILE = re.compile(r"hostfile|(^|\s)-H(\s|=|$)")


def doctor_view(form: Form) -> dict[str, Any]:
    """The doctor on a pasted launch script (+ pasted DeepSpeed JSON), the model from the form (a preset or an
    uploaded config.json) and the GPUs from the form; with the corrected script and JSON to download."""
    from ..adapters.launch_script import parse_launch_script
    from ..doctor import build_context, diagnose, fix_file_texts

    script = form.get("script")
    if not script.strip():
        raise FormError("script: paste the launch command or script (deepspeed / torchrun / accelerate launch ...)")
    if _HOSTFILE.search(script):
        raise FormError("script: the page does not read hostfiles on the server; remove --hostfile and set the GPU "
                        "count and nodes in the form")
    spec = None
    if form.config is not None:
        spec = api.model_from_config(form.config, name=form.config_name)
        model = form.config_name
    else:
        model = form.get("model")
        if not model and form.get("base"):
            data, _ = scenario_dict(form)
            model = str(data["model"])
        if model not in preset_ids():
            raise FormError("model: pick the preset the script trains or upload its config.json (the page never "
                            "reads paths from the script)")
    ds = parse_json_object("ds_json", form.get("ds_json"), "DeepSpeed JSON") if form.get("ds_json").strip() else None
    launch = parse_launch_script(script, base_dir=None, env={}, source="pasted script")
    if launch.deepspeed_config and ds is None:
        raise FormError(f"ds_json: the script passes --deepspeed {launch.deepspeed_config[:80]}; paste that JSON "
                        "(the page never reads files on the server)")
    if launch.training_config:
        raise FormError(f"script: it reads its settings from {launch.training_config[:80]}, a file the page cannot "
                        "read; run `vramplan doctor --script` on your machine instead")
    launch = replace(launch, deepspeed_config_path=None, hostfile_path=None, base_dir=None,
                     warnings=tuple(w for w in launch.warnings if "not found" not in w))
    gpu = form.get("gpu") or "a100-80g"
    gpus = f"{form.ints['gpus_per_node']}x{gpu}" if "gpus_per_node" in form.ints else gpu
    host = f"{form.ints['host_ram_gb']}GB" if "host_ram_gb" in form.ints else None
    ctx = build_context(launch, gpus=gpus, deepspeed=ds, model=model, host_ram=host, nodes=form.ints.get("nodes"),
                        model_spec=spec)
    report = diagnose(ctx)
    est = report.context.estimate
    best = report.prescription.best
    choice = form.ints.get("fix_choice")
    files: dict[str, str] = {}
    if report.option_to_apply(choice) is not None:
        files = dict(fix_file_texts(report, choice=choice))
    return {
        "kind": "doctor", "verdict": "FITS" if est.fits else "OOM", "fits": est.fits,
        "fix": None if best is None else {"title": best.title, "device_used_bytes": best.peak_bytes},
        "findings": [f.rule_id for f in report.findings],
        "fix_files": files,
        "verdict_html": verdict_html(est), "html": doctor_section(report),
    }
