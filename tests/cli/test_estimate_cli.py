"""In-process CLI tests for estimate, models and gpus: output, JSON schema, and one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramplan.cli.main import main
from vramplan.core.breakdown import KEYS


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_estimate_builtin_scenario_text(capsys) -> None:
    code, out, err = run(capsys, "estimate", "mgm-2b-stage2")
    assert code == 0, err
    assert "Verdict: OOM" in out
    assert "activations/logits_loss" in out
    assert "4x NVIDIA GeForce RTX 4090" in out


def test_estimate_json_schema(capsys) -> None:
    code, out, _ = run(capsys, "estimate", "llama-3.1-8b", "--gpus", "8xa100-80g", "--zero", "3", "--json")
    assert code == 0
    data = json.loads(out)
    for key in ("peak_allocated_bytes", "peak_reserved_bytes", "device_used_bytes", "fits", "peak_phase", "breakdown", "phases", "host", "scenario"):
        assert key in data
    assert set(data["breakdown"]) == set(KEYS)
    assert set(data["phases"]) == {"forward", "backward", "optimizer"}
    assert all(isinstance(v, int) for v in data["breakdown"].values())
    assert data["scenario"]["parallel"]["zero"] == 3
    assert data["gpu"]["count"] == 8
    assert data["peak_allocated_bytes"] <= data["peak_reserved_bytes"] <= data["device_used_bytes"]


def test_estimate_flags_override_scenario(capsys) -> None:
    _, out1, _ = run(capsys, "estimate", "mgm-2b-stage2", "--json")
    _, out2, _ = run(capsys, "estimate", "mgm-2b-stage2", "--micro-batch", "1", "--json")
    a, b = json.loads(out1), json.loads(out2)
    assert b["scenario"]["train"]["micro_batch"] == 1
    assert b["breakdown"]["activations/logits_loss"] * 8 == a["breakdown"]["activations/logits_loss"]


def test_estimate_scenario_file_roundtrip(tmp_path: Path, capsys) -> None:
    _, out, _ = run(capsys, "estimate", "qwen2.5-7b", "--gpus", "4xrtx4090", "--zero", "3", "--method", "lora", "--json")
    scenario = json.loads(out)["scenario"]
    path = tmp_path / "scn.json"
    path.write_text(json.dumps(scenario))
    _, out2, _ = run(capsys, "estimate", str(path), "--json")
    assert json.loads(out2)["device_used_bytes"] == json.loads(out)["device_used_bytes"]


def test_estimate_output_file_written_only_on_success(tmp_path: Path, capsys) -> None:
    target = tmp_path / "report.json"
    code, _, _ = run(capsys, "estimate", "no-such-model", "-o", str(target))
    assert code == 2 and not target.exists()
    code, _, _ = run(capsys, "estimate", "gemma-2b", "--gpus", "rtx4090", "--json", "-o", str(target))
    assert code == 0 and json.loads(target.read_text())["gpu"]["id"] == "rtx4090"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["estimate", "no-such-model"], "no-such-model"),
        (["estimate", "llama-2-7b", "--gpus", "4xfoo"], "foo"),
        (["estimate", "llama-2-7b", "--gpus", "4xa100-80g", "--zero", "5"], "parallel.zero"),
        (["estimate", "llama-2-7b", "--gpus", "4xa100-80g", "--precision", "bf17"], "train.precision"),
        (["estimate", "llama-2-7b", "--gpus", "4xa100-80g", "--tp", "3"], "parallel.tp"),
        (["estimate", "llama-2-7b", "--gpus", "4xa100-80g", "--ep", "2"], "parallel.ep"),
        (["estimate", "llama-2-7b", "--method", "lora", "--lora-targets", "nothing_proj"], "train.lora.targets"),
        (["estimate"], "no model given"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv: list[str], needle: str) -> None:
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_key_and_invalid_yaml(tmp_path: Path, capsys) -> None:
    bad_key = tmp_path / "a.yaml"
    bad_key.write_text("model: llama-2-7b\ntrain:\n  micro_batchh: 4\n")
    code, _, err = run(capsys, "estimate", str(bad_key))
    assert code == 2 and "train.micro_batchh" in err and "unknown key" in err
    broken = tmp_path / "b.yaml"
    broken.write_text("model: llama-2-7b\ntrain: [1, 2\n")
    code, _, err = run(capsys, "estimate", str(broken))
    assert code == 2 and "b.yaml:" in err and "invalid YAML" in err
    bad_json = tmp_path / "c.json"
    bad_json.write_text('{"model": "llama-2-7b",\n "train": {,}}')
    code, _, err = run(capsys, "estimate", "--scenario", str(bad_json))
    assert code == 2 and "c.json:2:" in err


def test_models_lists_presets_with_params(capsys) -> None:
    code, out, _ = run(capsys, "models", "--json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["mixtral-8x7b"]["total_params"] == 46_702_792_704
    assert rows["mixtral-8x7b"]["active_params"] < rows["mixtral-8x7b"]["total_params"]
    for name in ("mgm-2b", "mgm-8x7b-hd", "llava-1.5-7b", "qwen2-vl-7b", "deepseek-v2-lite", "olmoe-1b-7b"):
        assert name in rows
    code, out, _ = run(capsys, "models")
    assert "mgm-8x7b" in out and "46.70B" in out


def test_gpus_lists_catalog(capsys) -> None:
    code, out, _ = run(capsys, "gpus", "--json")
    assert code == 0
    ids = {g["id"] for g in json.loads(out)}
    assert {"t4", "v100-16g", "v100-32g", "rtx3090", "rtx4090", "rtx5090", "a10", "l4", "a6000", "l40s",
            "a100-40g", "a100-80g", "h100-80g", "h200", "mi300x"} <= ids
    code, out, _ = run(capsys, "gpus")
    assert code == 0
    assert "rtx4090" in out and "no P2P" in out


@pytest.mark.parametrize("gpus", ["6x24GiB", "2x80GB"])
def test_custom_gpu_sizes_roundtrip_through_the_scenario_file(tmp_path: Path, capsys, gpus: str) -> None:
    _, out, _ = run(capsys, "estimate", "llama-2-7b", "--gpus", gpus, "--zero", "3", "--json")
    first = json.loads(out)
    path = tmp_path / "scn.json"
    path.write_text(json.dumps(first["scenario"]))
    code, out2, err = run(capsys, "estimate", str(path), "--json")
    assert code == 0, err
    again = json.loads(out2)
    assert again["gpu"]["capacity_bytes"] == first["gpu"]["capacity_bytes"]
    assert again["device_used_bytes"] == first["device_used_bytes"]
