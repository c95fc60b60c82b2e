"""Public API: the functions the CLI, the web app and users call."""

from __future__ import annotations

from typing import Any, Mapping

from .adapters.scenario_file import scenario_from_dict
from .core.estimate import Estimate, estimate_scenario
from .core.model import ModelSpec
from .core.scenario import Scenario


def load_scenario(data: Mapping[str, Any], model: ModelSpec | None = None) -> Scenario:
    """A scenario dict (file schema) -> Scenario (loads the model it names, unless ``model`` is given)."""
    return scenario_from_dict(data, model=model)


def model_from_config(config: Mapping[str, Any], name: str = "custom") -> ModelSpec:
    """A Hugging Face ``config.json`` already parsed into a dict -> ModelSpec (nothing is read or run)."""
    from .adapters.hf_config import model_from_config as parse

    return parse(dict(config), name=name, source=f"{name} (config given as data)")


def estimate(scenario: Scenario) -> Estimate:
    """The analytical estimate of a scenario."""
    return estimate_scenario(scenario)


def estimate_from_dict(data: Mapping[str, Any]) -> Estimate:
    """Scenario dict -> estimate."""
    return estimate_scenario(scenario_from_dict(data))


# --- planner (vramplan plan / emit) ------------------------------------------------------------------------

from typing import Sequence  # noqa: E402

from .core.planner import NearestOption, PlanResult, Sizing  # noqa: E402
from .core.scenario import Method  # noqa: E402

DEFAULT_ALTERNATIVE_GPUS = ("a100-80g", "h100-80g")
"""GPU types the planner suggests when nothing fits on the given ones."""


def _parse_methods(methods: Sequence[str | Method]) -> tuple[Method, ...]:
    """Method names (or members) -> members; a one-line error names ``--method`` for unknown ones."""
    return tuple(Method(Method.parse("--method", m).value) for m in methods)


def plan(
    scenario: Scenario,
    *,
    global_batch: int | None = None,
    methods: Sequence[str | Method] = (),
    top: int | None = None,
    model_parallel: bool = True,
) -> PlanResult:
    """Search the setups of ``scenario``'s model on its cluster; ``PlanResult.plans`` fit, fastest first.

    ``methods``: training methods to consider (``full``, ``lora``, ``qlora``; empty = the scenario's own).
    """
    from .core.planner import PlanRequest, search_plans

    request = PlanRequest(global_batch=global_batch, methods=_parse_methods(methods), top=top,
                          model_parallel=model_parallel)
    return search_plans(scenario, request)


def plan_from_dict(data: Mapping[str, Any], **kwargs: Any) -> PlanResult:
    """Scenario dict -> ``plan(...)``."""
    return plan(scenario_from_dict(data), **kwargs)


def nearest_options(
    result: PlanResult, gpu_types: Sequence[str] = DEFAULT_ALTERNATIVE_GPUS, max_gpus: int = 256
) -> tuple[NearestOption, ...]:
    """When ``result`` has no plan: more host RAM, LoRA/QLoRA, more GPUs, other GPU types (with numbers)."""
    from .core.planner import nearest_options as _nearest
    from .registry import load_gpu

    alternatives = [load_gpu(name) for name in gpu_types]
    return _nearest(result.start, result.request, result, alternatives, max_gpus=max_gpus)


def size_cluster(
    scenario: Scenario,
    gpu_types: Sequence[str],
    *,
    methods: Sequence[str | Method] = (),
    global_batch: int | None = None,
    max_gpus: int = 256,
) -> list[Sizing]:
    """The smallest number of GPUs of each type on which a plan fits, per method."""
    from .core.planner import PlanRequest
    from .core.planner import size_cluster as _size
    from .core.planner.space import allowed_methods
    from .registry import load_gpu

    parsed = _parse_methods(methods)
    request = PlanRequest(global_batch=global_batch, methods=parsed)
    rows = []
    for name in gpu_types:
        gpu = load_gpu(name)
        for method in allowed_methods(scenario, parsed):
            rows.append(_size(scenario, request, gpu, method, max_gpus=max_gpus))
    return rows


def emit_texts(scenario: Scenario, *, model_ref: str | None = None) -> dict[str, str]:
    """File name -> text of what ``emit_files`` writes (ds_config.json, accelerate config, launch.sh, scenario.yaml)."""
    from .adapters.emit_bundle import render_bundle
    from .core.steptime import estimate_step_time
    from .report.plan_text import emit_header

    ref = model_ref or scenario.model.name
    header = emit_header(estimate_scenario(scenario), estimate_step_time(scenario))
    return render_bundle(scenario, ref, model_path_for(ref), header=header)


def emit_files(scenario: Scenario, out_dir: str, *, model_ref: str | None = None, force: bool = False) -> list[Any]:
    """Write scenario.yaml, launch.sh and ds_config.json / accelerate_config.yaml for ``scenario``."""
    from .adapters.emit_bundle import render_bundle, write_bundle
    from .core.steptime import estimate_step_time
    from .report.plan_text import emit_header

    ref = model_ref or scenario.model.name
    header = emit_header(estimate_scenario(scenario), estimate_step_time(scenario))
    files = render_bundle(scenario, ref, model_path_for(ref), header=header, out_dir=out_dir)
    return write_bundle(files, out_dir, force=force)


def model_path_for(model_ref: str) -> str:
    """``--model_name_or_path`` for a model reference: a preset's Hub id, else the reference itself."""
    from .registry import preset_info, resolve_preset_id

    if resolve_preset_id(model_ref) is None:
        return model_ref
    return preset_info(model_ref).hf_id or model_ref
