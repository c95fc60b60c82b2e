"""In-process CLI tests for ``vramplan plan`` and ``vramplan emit``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.cli.main import main
from vramplan.core.breakdown import KEYS


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors (one line, exit 2)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_mgm2b_on_4x4090(capsys) -> None:
    code, out, err = run(capsys, "plan", "mgm-2b", "--gpus", "4xrtx4090", "--micro-batch", "2")
    assert code == 0, err
    assert "Starting setup: DeepSpeed ZeRO-2" in out and "does not fit" in out
    assert "Plans that fit" in out
    for column in ("used", "states", "activ", "margin", "host", "step", "tokens/s"):
        assert column in out
    assert "changes:" in out and "Assumptions:" in out and "MFU" in out


def test_plan_mgm2b_json_top_plans_use_the_reported_fixes(capsys) -> None:
    code, out, err = run(capsys, "plan", "mgm-2b-stage2", "--json", "--top", "3")
    assert code == 0, err
    data = json.loads(out)
    assert [p["rank"] for p in data["plans"]] == [1, 2, 3]
    for plan in data["plans"]:
        assert plan["estimate"]["fits"] is True
        assert set(plan["estimate"]["breakdown"]) == set(KEYS)
        assert plan["scenario"]["train"]["micro_batch"] < 8
        assert plan["step_time"]["total_s"] > 0 and plan["step_time"]["tokens_per_s"] > 0
        assert isinstance(plan["changes"], list)
        scn = scenario_from_dict(plan["scenario"])  # the scenario schema round-trips
        assert scn.train.micro_batch == plan["scenario"]["train"]["micro_batch"]
    fixes = [p for p in data["plans"] if p["scenario"]["parallel"]["offload_optimizer"] != "none"
             or p["scenario"]["parallel"]["zero"] == 3]
    assert fixes
    assert data["start"]["fits"] is False
    assert data["assumptions"] and data["searched"]["estimates"] > 0


def test_plan_mgm8x7b_full_nothing_fits(capsys) -> None:
    code, out, _err = run(capsys, "plan", "mgm-8x7b", "--gpus", "6xrtx4090", "--method", "full", "--host-ram", "256GB")
    assert code == 1
    assert "No plan fits" in out and "host RAM per node" in out
    assert "Nearest options:" in out
    assert "more host RAM: DeepSpeed ZeRO-3 + offload opt+params cpu" in out
    assert "qlora r=16 (change of training method) fits" in out
    assert "more GPUs of this type" in out and "A100 80GB" in out
    assert "Closest setups that do not fit" in out


def test_plan_mgm8x7b_json_nearest(capsys) -> None:
    code, out, _ = run(capsys, "plan", "mgm-8x7b-stage2", "--method", "full", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["plans"] == []
    kinds = [o["kind"] for o in data["nearest"]]
    assert "host_ram" in kinds and "method" in kinds and "gpu_type" in kinds
    host = next(o for o in data["nearest"] if o["kind"] == "host_ram")
    assert host["host_ram_needed_bytes"] > 256e9
    assert data["rejected"][0]["kind"] == "host"


def test_plan_method_any_marks_the_change(capsys) -> None:
    code, out, _ = run(capsys, "plan", "mgm-8x7b", "--gpus", "6xrtx4090", "--method", "any", "--host-ram", "256GB",
                       "--json")
    assert code == 0
    data = json.loads(out)
    assert data["plans"]
    for plan in data["plans"]:
        assert plan["scenario"]["train"]["method"] in ("lora", "qlora")
        assert plan["changes"][0].startswith("method full -> ")


def test_plan_emit_writes_files_and_refuses_to_overwrite(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    code, _, err = run(capsys, "plan", "mgm-2b-stage2", "--emit", str(out_dir))
    assert code == 0, err
    names = {p.name for p in out_dir.iterdir()}
    assert names == {"scenario.yaml", "ds_config.json", "launch.sh"}
    before = {p.name: p.read_text() for p in out_dir.iterdir()}
    code, _, err = run(capsys, "plan", "mgm-2b-stage2", "--emit", str(out_dir))
    assert code == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_text() for p in out_dir.iterdir()} == before
    code, _, _ = run(capsys, "plan", "mgm-2b-stage2", "--emit", str(out_dir), "--force")
    assert code == 0
    scn = scenario_from_dict(yaml.safe_load((out_dir / "scenario.yaml").read_text()))
    ds = json.loads((out_dir / "ds_config.json").read_text())
    assert ds["train_micro_batch_size_per_gpu"] == scn.train.micro_batch
    assert f"--per_device_train_batch_size {scn.train.micro_batch}" in (out_dir / "launch.sh").read_text()


def test_plan_emit_nothing_when_nothing_fits(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "plan", "mgm-8x7b-stage2", "--method", "full", "--emit", str(tmp_path / "x"))
    assert code == 1 and "nothing written" in err
    assert not (tmp_path / "x").exists()


def test_emit_from_plan_json_and_scenario(capsys, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "plan", "mgm-2b-stage2", "--json")
    plans_file = tmp_path / "plans.json"
    plans_file.write_text(out)
    data = json.loads(out)
    code, out, err = run(capsys, "emit", str(plans_file), "--rank", "2", "--out", str(tmp_path / "r2"))
    assert code == 0, err
    back = yaml.safe_load((tmp_path / "r2" / "scenario.yaml").read_text())
    assert scenario_from_dict(back) == scenario_from_dict(data["plans"][1]["scenario"])
    code, _, err = run(capsys, "emit", str(plans_file), "--rank", "99", "--out", str(tmp_path / "r99"))
    assert code == 2 and "--rank" in err
    code, out, err = run(capsys, "emit", "mgm-2b-stage2", "--zero", "3", "--micro-batch", "1", "--out", str(tmp_path / "s"))
    assert code == 0 and "wrote" in out
    assert json.loads((tmp_path / "s" / "ds_config.json").read_text())["zero_optimization"]["stage"] == 3
    code, out, err = run(capsys, "emit", "mgm-2b-stage2", "--out", str(tmp_path / "oom"))
    assert code == 0 and "does not fit" in err


def test_plan_gpu_type_sizing(capsys) -> None:
    code, out, err = run(capsys, "plan", "llama-3.1-8b", "--gpu-type", "rtx4090", "--global-batch", "16",
                         "--host-ram", "256GB", "--method", "any")
    assert code == 0, err
    assert "GPUs needed" in out
    assert "full" in out and "lora" in out and "qlora" in out


def test_plan_compare_json(capsys) -> None:
    code, out, err = run(capsys, "plan", "mgm-8x7b", "--compare", "rtx4090,a100-80g,h100-80g", "--global-batch", "16",
                         "--host-ram", "512GB", "--json")
    assert code == 0, err
    rows = json.loads(out)["sizing"]
    assert [r["gpu"] for r in rows] == ["rtx4090", "a100-80g", "h100-80g"]
    counts = {r["gpu"]: r["count"] for r in rows}
    assert counts["a100-80g"] is not None and counts["rtx4090"] is not None
    assert counts["a100-80g"] <= counts["rtx4090"]
    for r in rows:
        if r["plan"]:
            assert r["plan"]["estimate"]["fits"] and r["plan"]["scenario"]["hardware"]["gpu"] == r["gpu"]


def test_plan_compare_with_gpus_adds_a_sizing_table(capsys) -> None:
    code, out, _ = run(capsys, "plan", "mgm-2b", "--gpus", "4xrtx4090", "--compare", "a100-80g", "--top", "1")
    assert code == 0 and "GPUs needed" in out and "Plans that fit" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["plan", "mgm-2b", "--gpus", "4xrtx4090", "--method", "dora"], "--method='dora'"),
        (["plan", "mgm-2b", "--gpu-type", "4xrtx4090"], "--gpu-type='4xrtx4090'"),
        (["plan", "mgm-2b", "--gpus", "4xrtx4090", "--gpu-type", "rtx4090"], "not both"),
        (["plan", "mgm-2b", "--gpus", "4xrtx4090", "--global-batch", "0"], "--global-batch=0"),
        (["plan", "mgm-2b", "--gpu-type", "rtx4090", "--emit", "x"], "--emit needs"),
        (["emit", "mgm-2b"], "--out"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv: list[str], needle: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1


def test_plan_stage_pretrain(capsys) -> None:
    code, out, _ = run(capsys, "plan", "mgm-2b", "--gpus", "4xrtx4090", "--stage", "pretrain", "--json", "--top", "1")
    assert code == 0
    scn = json.loads(out)["plans"][0]["scenario"]
    assert scn["train"]["method"] == "freeze" and scn["train"]["trainable"] == ["projector"]
