"""parse(emit(plan)) gives the plan back: scenario.yaml exactly; launch.sh + ds_config.json through doctor's parsers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vramplan.adapters.emit_bundle import render_bundle, write_bundle
from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.core.planner import PlanRequest, search_plans
from vramplan.core.scenario import Engine, Method, Offload, Scenario

from .helpers import builtin, preset


def plan_scenarios() -> list[tuple[str, Scenario]]:
    """(model reference, scenario) of plans from several searches: DeepSpeed, FSDP, LoRA/QLoRA, custom GPU, pp/ep."""
    out: list[tuple[str, Scenario]] = []
    for ref, start, methods in (
        ("mgm-2b", builtin("mgm-2b-stage2"), ()),
        ("mgm-8x7b", builtin("mgm-8x7b-stage2"), (Method.FULL, Method.LORA, Method.QLORA)),
        ("llama-3.1-8b", preset("llama-3.1-8b", "24GiB", 4, host_ram_gb=256), (Method.FULL, Method.QLORA)),
        ("mixtral-8x7b", preset("mixtral-8x7b", "a100-80g", 8, host_ram_gb=1024), ()),
    ):
        for plan in search_plans(start, PlanRequest(methods=methods)).plans:
            out.append((ref, plan.scenario))
    return out


def test_scenario_yaml_round_trips_every_plan(tmp_path: Path) -> None:
    cases = plan_scenarios()
    assert len(cases) > 20
    engines = set()
    for i, (ref, scn) in enumerate(cases):
        files = render_bundle(scn, ref, ref)
        back = scenario_from_dict(yaml.safe_load(files["scenario.yaml"]))
        assert back == scn, (i, ref)
        engines.add(scn.parallel.engine)
    assert {Engine.DEEPSPEED, Engine.FSDP, Engine.FSDP2} <= engines


def _key_settings(scn: Scenario) -> dict[str, object]:
    t, p = scn.train, scn.parallel
    out: dict[str, object] = {
        "engine": p.engine, "zero": p.zero, "offload_optimizer": p.offload_optimizer,
        "offload_param": p.offload_param if p.zero == 3 else Offload.NONE,
        "micro_batch": t.micro_batch, "grad_accum": t.grad_accum, "seq_len": t.seq_len,
        "precision": t.precision, "grad_ckpt": t.grad_ckpt, "optimizer": t.optimizer, "method": t.method,
        "world": scn.cluster.world_size, "expandable_segments": p.expandable_segments, "attention": t.attention,
    }
    if t.method in (Method.LORA, Method.QLORA):
        out["lora"] = (t.lora.r, t.lora.alpha)
    if scn.model.is_moe and p.zero == 3:
        out["moe_leaf_modules"] = p.deepspeed.moe_leaf_modules
    return out


def test_doctor_parsers_read_the_emitted_launch_script_back(tmp_path: Path) -> None:
    """Uses the doctor's parsers (vramplan.adapters.launch_script / deepspeed_config); skipped without them."""
    launch_script = pytest.importorskip("vramplan.adapters.launch_script")
    deepspeed_config = pytest.importorskip("vramplan.adapters.deepspeed_config")
    checked = 0
    for i, (ref, scn) in enumerate(plan_scenarios()):
        if scn.parallel.engine is not Engine.DEEPSPEED or scn.parallel.pp > 1 or scn.parallel.ep > 1:
            continue  # the doctor reads HF-Trainer launches; pp/ep need model code, FSDP lives in accelerate's YAML
        out = tmp_path / f"plan{i}"
        write_bundle(render_bundle(scn, ref, ref, out_dir=out), out)
        launch = launch_script.read_launch_script(out / "launch.sh")
        assert launch.deepspeed_config_path == str((out / "ds_config.json").resolve())
        ds = deepspeed_config.parse_deepspeed_config(
            launch.deepspeed_config_path, hidden_size=scn.model.decoder.hidden_size, world_size=scn.dp_degree,
            micro_batch=launch.micro_batch, grad_accum=launch.grad_accum, bf16=launch.bf16, fp16=launch.fp16)
        assert not ds.mismatches, ds.mismatches
        gpu = scn.cluster.gpu.id.removeprefix("custom-")
        data = launch_script.launch_to_scenario_dict(
            launch, ds, gpus=f"{scn.cluster.gpus_per_node}x{gpu}", model=ref, is_vlm=scn.model.is_vlm)
        back = scenario_from_dict(data)
        assert _key_settings(back) == _key_settings(scn), (i, ref)
        checked += 1
    assert checked >= 5
