"""The runtime benchmarks run on the CPU: calibration plan validation, accuracy with no data, monitor overhead."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.torch
def test_gpu_calibration_plan_validates_on_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    cal = _load("gpu_calibration")
    assert cal.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "0 problem(s)" in out and "MISMATCH" not in out
    names = [r.name for r in cal.plan()]
    assert any("fsdp2" in n for n in names) and any("qlora" in n for n in names) and any("llava" in n for n in names)
    assert any("olmoe" in n for n in names) and any("nockpt" in n for n in names) and any("s8192" in n for n in names)


def test_calibration_accuracy_with_no_measurements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acc = _load("calibration_accuracy")
    assert acc.main(["--dir", str(tmp_path)]) == 0
    assert "no measurements yet" in capsys.readouterr().out


def test_calibration_accuracy_compares_saved_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acc = _load("calibration_accuracy")
    scenario = {"model": "benchmarks/calibration_configs/qwen2.5-0.5b.json", "hardware": {"gpu": "h200"},
                "parallel": {"engine": "single"}, "train": {"seq_len": 2048, "micro_batch": 4, "grad_ckpt": "full"}}
    gib = 2**30
    lines = [{"run": "a", "status": "ok", "scenario": scenario,
              "measured": {"peak_allocated_bytes": 15 * gib, "peak_reserved_bytes": 17 * gib, "device_used_bytes": 18 * gib}},
             {"run": "b", "status": "skipped", "scenario": scenario, "error": "peft not installed"}]
    (tmp_path / "h200-x.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert acc.main(["--dir", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["rows"]) == 1 and set(data["summary"]) == {"allocated", "reserved", "device_used"}
    row = data["rows"][0]["reserved"]
    assert row["error"] == pytest.approx((row["estimated_bytes"] - 17 * gib) / (17 * gib))


@pytest.mark.torch
def test_bench_monitor_quick(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    bench = _load("bench_monitor")
    assert bench.main(["--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["isolated_us_per_step"] > 0 and result["step_ms"] > 0
