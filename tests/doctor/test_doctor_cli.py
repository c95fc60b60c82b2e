"""In-process CLI tests: ``vramplan.cli.main.main([...])`` with capsys."""

from __future__ import annotations

import json

import pytest
from doctor_helpers import LLAVA, MGM_2B, MGM_8X7B

from vramplan.cli.main import main


def test_doctor_2b_text(capsys):
    code = main(["doctor", "--script", str(MGM_2B), "--gpus", "4xrtx4090"])
    out = capsys.readouterr().out
    assert code == 1
    assert "Verdict: OOM" in out and "activations/logits_loss" in out and "Largest: activations/logits_loss" in out
    assert "[WARNING] TR003" in out and "evidence: https://" in out
    assert "Recommended: #1" in out and " FITS " in out
    assert "command 2 of 2" in out and "mgm-2b (from --model_name_or_path" in out


def test_doctor_8x7b_text(capsys):
    code = main(["doctor", "--script", str(MGM_8X7B), "--gpus", "6xrtx4090", "--host-ram", "256GB"])
    out = capsys.readouterr().out
    assert code == 1
    assert "Nothing that keeps full fine-tuning fits on 6x NVIDIA GeForce RTX 4090" in out
    assert "Alternatives (change the method or the hardware):" in out
    assert "QLoRA (4-bit base)" in out and "LoRA r=64" in out and "NVIDIA A100 80GB" in out
    assert "Recommended:" not in out


def test_doctor_json(capsys, tmp_path):
    code = main(["doctor", "--script", str(MGM_2B), "--gpus", "4xrtx4090", "--json", "--fix-dir", str(tmp_path / "f")])
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert code == 1
    assert data["verdict"]["fits"] is False and data["verdict"]["largest"][0][0] == "activations/logits_loss"
    assert data["any_fix_fits"] is True and data["recommended"] == 0
    best = data["fixes"][0]
    assert best["fits"] and isinstance(best["peak_bytes"], int) and best["peak_bytes"] <= best["usable_bytes"]
    assert best["scenario"]["model"] == "mgm-2b" and best["changes"]
    assert {f["id"] for f in data["findings"]} >= {"TR003", "HW001"}
    assert data["deepspeed"]["zero_stage"] == 2 and data["deepspeed"]["reduce_bucket_size"] == 2048**2
    assert len(data["written"]) == 2 and "wrote" in captured.err


def test_doctor_fitting_setup_exits_zero(capsys):
    code = main(["doctor", "--script", str(LLAVA / "scripts/v1_5/finetune_lora.sh"), "--gpus", "8xa100-80g",
                 "--host-ram", "1TB"])
    out = capsys.readouterr().out
    assert code == 0 and "Verdict: FITS" in out


def test_doctor_args_string(capsys, monkeypatch):
    monkeypatch.chdir(LLAVA)
    command = ("deepspeed --include localhost:0,1 llava/train/train_mem.py --deepspeed ./scripts/zero3.json "
               "--model_name_or_path lmsys/vicuna-7b-v1.5 --vision_tower x --bf16 True --gradient_checkpointing True "
               "--per_device_train_batch_size 2 --my_flag 1")
    code = main(["doctor", "--args", command, "--gpus", "a100-80g"])
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert "llava-1.5-7b" in out and "--include localhost:0,1" in out and "unknown flags" in out and "--my_flag" in out


def test_doctor_bad_inputs_exit_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "zero2.json"
    bad.write_text('{\n  "zero_optimization": {\n    "stage": 2\n    "overlap_comm": true\n  }\n}\n')
    assert main(["doctor", "--script", str(MGM_2B), "--deepspeed", str(bad), "--gpus", "4xrtx4090"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4:5: invalid JSON" in err and err.count("\n") == 1 and "Traceback" not in err
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/bash\nset -e\necho start\n")
    assert main(["doctor", "--script", str(script), "--gpus", "4xrtx4090"]) == 2
    err = capsys.readouterr().err
    assert "no launcher line found; looked for a command starting with deepspeed, torchrun" in err
    assert main(["doctor", "--script", str(tmp_path / "missing.sh"), "--gpus", "4xrtx4090"]) == 2
    assert "script not found" in capsys.readouterr().err
    nomodel = tmp_path / "x.sh"
    nomodel.write_text("deepspeed train.py --model_name_or_path /ckpt/mine --bf16\n")
    assert main(["doctor", "--script", str(nomodel), "--gpus", "2xa100-80g"]) == 2
    assert "pass --model" in capsys.readouterr().err


def test_doctor_requires_gpus_and_a_source(capsys):
    assert main(["doctor", "--script", str(MGM_2B)]) == 2
    assert "needs the GPU model: pass --gpus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--gpus", "4xrtx4090"])
    assert exc.value.code == 2
    capsys.readouterr()
