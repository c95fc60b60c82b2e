"""The doctor pipeline: launch script (+ DeepSpeed JSON) -> scenario -> estimate -> findings -> fixes -> alternatives.

``run_doctor`` is the API the CLI calls. The model comes from ``--model`` when given, else from the
script's ``--model_name_or_path`` (a preset name in the path, or a local config.json). Host RAM that is
not given is *assumed* (twice the node's GPU memory) so that offload fixes are judged against something;
the report says so. Reads the script, the JSON and registry data; writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..adapters._launch_scenario import (
    cannot_tell_model,
    hardware_dict,
    launch_to_scenario_dict,
    model_reference,
)
from ..adapters.deepspeed_config import (
    DeepSpeedSettings,
    parse_deepspeed_config,
    read_json_file,
)
from ..adapters.launch_script import (
    LaunchSpec,
    parse_launch_script,
    read_launch_script,
    resolve_path,
    search_dirs,
)
from ..adapters.scenario_file import scenario_from_dict
from ..core.errors import ScenarioError, VramplanError
from ..core.estimate import estimate_scenario
from ..core.model import ModelSpec
from .alternatives import alternatives as find_alternatives
from .alternatives import assumed_host_ram
from .prescribe import Option, Prescription, prescribe
from .rules import run_rules
from .types import DoctorContext, Finding, Severity

FP32_ASSUMED_NOTE = ("precision: no --bf16/--fp16 flag (nor a DeepSpeed or accelerate setting) turns mixed precision "
                     "on, so fp32 training is assumed as HF's Trainer does; if the training code sets it itself, add "
                     "--bf16 True or --fp16 True to the script for this check")


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """Everything ``vramplan doctor`` shows."""

    context: DoctorContext
    findings: tuple[Finding, ...]
    prescription: Prescription
    alternatives: tuple[Option, ...] = ()
    script_path: str | None = None
    """The script file (None when the command came from --args)."""

    @property
    def fits(self) -> bool:
        """The user's setup fits as configured."""
        return self.context.estimate.fits

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def fitting_alternatives(self) -> tuple[Option, ...]:
        return tuple(o for o in self.alternatives if o.fits)

    def option_to_apply(self, choice: int | None = None) -> Option | None:
        """``choice`` (1-based in ``ranked_options``), else the best fitting fix, else a fitting LoRA/QLoRA."""
        ranked = self.ranked_options
        if choice is not None:
            if not 1 <= choice <= len(ranked):
                raise VramplanError(f"--fix-choice {choice}: the report lists {len(ranked)} option(s); use 1..{len(ranked)}")
            return ranked[choice - 1]
        best = self.prescription.best
        if best is not None:
            return best
        ranked_alts = sorted(self.alternatives, key=Option.rank_key)
        return next((o for o in ranked_alts if o.fits and o.kind in ("lora", "qlora")), None)

    @property
    def ranked_options(self) -> tuple[Option, ...]:
        """Fixes (ranked) then alternatives, the order in which the report numbers them."""
        return self.prescription.ranked + tuple(sorted(self.alternatives, key=Option.rank_key))


ACCELERATE_DS_SOURCE = "accelerate --use_deepspeed options"
"""``DeepSpeedSettings.source`` of a config built from accelerate's options (CLI or ``--config_file``)."""


def _accelerate_ds_dict(largs: Mapping[str, str]) -> dict[str, Any]:
    """The DeepSpeed dict accelerate's ``DeepSpeedPlugin`` builds from ``--use_deepspeed --zero_stage N ...``
    (or the config file's ``deepspeed_config``): batch sizes "auto", buckets at DeepSpeed's defaults,
    ``zero3_save_16bit_model`` as ``stage3_gather_16bit_weights_on_model_save``."""
    stage = str(largs.get("zero_stage", "2") or "2").strip()
    if stage not in ("0", "1", "2", "3"):
        raise ScenarioError("accelerate zero_stage", stage, "must be 0, 1, 2 or 3")
    zero: dict[str, Any] = {"stage": int(stage)}
    for key in ("offload_optimizer", "offload_param"):
        device = largs.get(f"{key}_device")
        if device and device != "none":
            zero[key] = {"device": device}
    if "zero3_save_16bit_model" in largs:
        zero["stage3_gather_16bit_weights_on_model_save"] = largs["zero3_save_16bit_model"].strip().lower() == "true"
    mp = largs.get("mixed_precision", "").strip().strip("'\"").lower()
    return {
        "zero_optimization": zero,
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": largs.get("gradient_accumulation_steps", "auto"),
        "bf16": {"enabled": True if mp == "bf16" else "auto"},
        "fp16": {"enabled": True if mp == "fp16" else "auto"},
    }


def _ds_source(launch: LaunchSpec, deepspeed: str | Path | Mapping[str, Any] | None) -> Mapping[str, Any] | Path | None:
    if deepspeed is not None:
        if isinstance(deepspeed, Mapping):
            return deepspeed
        path = Path(deepspeed)
        found = path if path.exists() else resolve_path(str(deepspeed), launch.base_dir)
        if found is None:
            raise VramplanError(f"--deepspeed {deepspeed}: file not found; check the path")
        return found
    if launch.deepspeed_config_path:
        return Path(launch.deepspeed_config_path)
    if launch.deepspeed_config:
        if "$" in launch.deepspeed_config:
            raise VramplanError(f"the script passes --deepspeed {launch.deepspeed_config}, a shell variable it does not "
                                "set; pass the file with --deepspeed PATH")
        where = ", ".join(str(d) for d in search_dirs(launch.base_dir))
        raise VramplanError(f"the script passes --deepspeed {launch.deepspeed_config}, which was not found (looked in "
                            f"{where}); pass the file with --deepspeed PATH")
    if launch.launcher == "accelerate" and launch.launcher_args.get("use_deepspeed") == "true":
        return _accelerate_ds_dict(launch.launcher_args)
    return None


def build_context(
    launch: LaunchSpec,
    *,
    gpus: str | None,
    deepspeed: str | Path | Mapping[str, Any] | None = None,
    model: str | None = None,
    host_ram: str | None = None,
    nodes: int | None = None,
    model_spec: ModelSpec | None = None,
) -> DoctorContext:
    """Scenario and estimate of the launch (see the module docstring for model and host RAM).

    ``model_spec``: an already-built model (the web page's uploaded config.json); ``model`` then only names it."""
    from ..registry import load_model

    if model_spec is not None:
        ref: str = model or model_spec.name
        how = f"{ref} (uploaded config.json)"
        spec = model_spec
    else:
        found, how = (model, f"{model} (from --model)") if model else model_reference(launch)
        if found is None:
            raise VramplanError(cannot_tell_model(how))
        ref = found
        spec = load_model(ref)
    hw = hardware_dict(launch, gpus, nodes, host_ram)
    world = hw["gpus_per_node"] * hw["nodes"]
    ds: DeepSpeedSettings | None = None
    source = _ds_source(launch, deepspeed)
    if source is not None:
        raw = source if isinstance(source, Mapping) else read_json_file(source)
        settings = parse_deepspeed_config(
            raw, hidden_size=spec.decoder.hidden_size, world_size=world, micro_batch=launch.micro_batch,
            grad_accum=launch.grad_accum_for(world), bf16=launch.bf16, fp16=launch.fp16,
        )
        ds = replace(settings, source=str(source) if not isinstance(source, Mapping) else ACCELERATE_DS_SOURCE)
    data = launch_to_scenario_dict(launch, ds, gpus=gpus, model=ref, host_ram=host_ram, nodes=nodes, is_vlm=spec.is_vlm)
    scn = scenario_from_dict(data, model=spec)
    assumed = scn.cluster.host_ram_bytes is None
    if assumed:
        scn = replace(scn, cluster=replace(scn.cluster, host_ram_bytes=assumed_host_ram(scn.cluster.gpu, scn.cluster.gpus_per_node)))
    est = estimate_scenario(scn)
    notes = [w for w in launch.warnings if not (deepspeed is not None and w.startswith("DeepSpeed config"))]
    if scn.train.precision.value == "fp32":
        notes.append(FP32_ASSUMED_NOTE)
    if launch.unresolved:
        notes.append("unresolved in the script: " + ", ".join(launch.unresolved))
    return DoctorContext(scenario=scn, estimate=est, launch=launch, ds=ds, model_ref=ref, model_how=how,
                         host_ram_bytes=scn.cluster.host_ram_bytes or 0, host_ram_assumed=assumed, notes=tuple(notes))


def diagnose(ctx: DoctorContext, *, with_alternatives: bool | None = None, script_path: str | None = None) -> DoctorReport:
    """Findings, ranked fixes and (when no fix keeps full fine-tuning on these GPUs) the alternatives."""
    findings = run_rules(ctx)
    prescription = prescribe(ctx)
    alts: list[Option] = []
    if with_alternatives or (with_alternatives is None and not prescription.any_fits):
        alts = find_alternatives(ctx, prescription)
    return DoctorReport(context=ctx, findings=tuple(findings), prescription=prescription, alternatives=tuple(alts),
                        script_path=script_path)


def run_doctor(
    *,
    script: str | Path | None = None,
    args: str | None = None,
    deepspeed: str | Path | Mapping[str, Any] | None = None,
    gpus: str | None = None,
    model: str | None = None,
    host_ram: str | None = None,
    nodes: int | None = None,
    command: int | None = None,
    env: Mapping[str, str] | None = None,
    with_alternatives: bool | None = None,
) -> DoctorReport:
    """Doctor a launch script file (``script``) or a command line (``args``)."""
    if (script is None) == (args is None):
        raise VramplanError("give exactly one of --script FILE or --args \"deepspeed train.py ...\"")
    if script is not None:
        launch = read_launch_script(script, env=env, command=command)
    else:
        assert args is not None
        launch = parse_launch_script(args, base_dir=Path.cwd(), env=env, command=command, source="--args")
    ctx = build_context(launch, gpus=gpus, deepspeed=deepspeed, model=model, host_ram=host_ram, nodes=nodes)
    return diagnose(ctx, with_alternatives=with_alternatives, script_path=str(script) if script is not None else None)
