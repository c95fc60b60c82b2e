"""``--estimator trace`` / ``--method trace``, ``vramplan calibrate`` and ``plan --verify`` on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from vramplan.cli.main import main

pytestmark = pytest.mark.torch

TINY = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 1024}


@pytest.fixture
def tiny(tmp_path: Path) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_estimate_trace_json_has_the_analytic_schema(capsys, tiny) -> None:
    code, out, err = run(capsys, "estimate", tiny, "--estimator", "trace", "--seq-len", "256", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["method"] == "trace"
    assert set(data["phases"]) == {"forward", "backward", "optimizer"}
    assert all(isinstance(v, int) for v in data["breakdown"].values())
    assert any("traced on fake tensors" in n for n in data["notes"])
    code, out2, err = run(capsys, "estimate", tiny, "--seq-len", "256", "--json")
    analytic = json.loads(out2)
    diff = abs(analytic["peak_allocated_bytes"] - data["peak_allocated_bytes"]) / data["peak_allocated_bytes"]
    assert diff < 0.08


def test_method_trace_is_the_estimator_alias(capsys, tiny) -> None:
    code, out, err = run(capsys, "estimate", tiny, "--method", "trace", "--seq-len", "128")
    assert code == 0, err
    assert out.startswith("vramplan estimate (traced)")


def test_trace_of_an_untraceable_layout_is_one_line(capsys, tiny) -> None:
    code, _out, err = run(capsys, "estimate", tiny, "--estimator", "trace", "--gpus", "2xa100-80g", "--tp", "2")
    assert code == 2
    assert err.count("\n") == 1 and "tp=pp=ep=1" in err


def test_calibrate_stores_a_profile_that_estimate_then_uses(capsys, tiny, tmp_path, monkeypatch) -> None:
    profiles = tmp_path / "profiles"
    monkeypatch.setenv("VRAMPLAN_PROFILE_DIR", str(profiles))
    code, out, err = run(capsys, "calibrate", tiny, "--seq-len", "256", "--json")
    assert code == 0, err
    data = json.loads(out)
    dense = data["layers"]["dense"]
    assert dense["saved_per_token"] > 0
    # the trace and the formula agree on a Llama layer (the formula is what the cross-validation holds)
    assert abs(dense["saved_per_token"] - dense["formula_saved_per_token"]) <= 0.02 * dense["formula_saved_per_token"]
    assert Path(data["stored_at"]).is_file()
    code, out, err = run(capsys, "estimate", tiny, "--seq-len", "256", "--json")
    assert code == 0, err
    assert any("stored profile" in n for n in json.loads(out)["notes"])


def test_plan_verify_traces_the_top_plans(capsys, tiny) -> None:
    code, out, err = run(capsys, "plan", tiny, "--gpus", "2xa100-80g", "--seq-len", "256", "--verify", "1",
                         "--no-model-parallel")
    assert code == 0, err
    section = out.split("Verified by trace", 1)[1].splitlines()
    line = next(ln for ln in section if ln.strip().startswith("1 "))
    assert line.count("GiB") == 2 and ("yes" in line or "NO" in line)
