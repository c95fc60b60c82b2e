"""--fix-dir: corrected copies of the JSON and the script; originals untouched; the copy parses back to the fix."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from doctor_helpers import MGM, MGM_2B

from vramplan.adapters.launch_script import read_launch_script
from vramplan.core.errors import VramplanError
from vramplan.doctor import build_context, run_doctor, write_fix_files
from vramplan.doctor.fixfiles import corrected_script
from vramplan.doctor.types import Change


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fix_dir_writes_corrected_copies_that_parse_back(report_2b, tmp_path):
    originals = {p: _digest(p) for p in (MGM_2B, MGM / "scripts/zero2.json")}
    out = tmp_path / "fixed"
    written = write_fix_files(report_2b, out)
    assert {p.name for p in written} == {MGM_2B.name, "zero2.json"}
    assert all(_digest(p) == d for p, d in originals.items())
    best = report_2b.prescription.best
    launch = read_launch_script(out / MGM_2B.name)
    assert launch.deepspeed_config_path == str((out / "zero2.json").resolve())
    ctx = build_context(launch, gpus="4xrtx4090")
    assert ctx.scenario == best.scenario  # the corrected files describe exactly the prescribed run
    assert ctx.estimate.fits
    text = (out / MGM_2B.name).read_text()
    assert text.startswith("#!/bin/bash\n# Corrected by `vramplan doctor`") and "export NCCL_P2P_DISABLE=1" in text
    assert json.loads((out / "zero2.json").read_text())["zero_optimization"]["sub_group_size"] == 1_000_000_000


def test_fix_dir_refuses_non_empty_folders_and_the_originals(report_2b, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(VramplanError, match="not an empty folder"):
        write_fix_files(report_2b, busy)
    assert write_fix_files(report_2b, busy, force=True)
    work = tmp_path / "repo"
    shutil.copytree(MGM, work)
    script = work / "scripts/gemma/train" / MGM_2B.name
    report = run_doctor(script=script, gpus="4xrtx4090")
    before = _digest(script)
    with pytest.raises(VramplanError, match="would overwrite the original"):
        write_fix_files(report, script.parent, force=True)
    assert _digest(script) == before


def test_fix_choice_and_args_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(MGM)
    report = run_doctor(args="deepspeed mgm/train/train_mem.py --deepspeed scripts/zero2.json "
                             "--model_name_or_path gemma-2b-it --vision_tower clip --vision_tower_aux convnext "
                             "--per_device_train_batch_size 8 --bf16 True --gradient_checkpointing True "
                             "--model_max_length 2048", gpus="4xrtx4090")
    ranked = report.ranked_options
    chunked = next(i for i, o in enumerate(ranked, 1) if o.ids == ("chunked_loss",))
    written = write_fix_files(report, tmp_path / "out", choice=chunked)
    script = next(p for p in written if p.name == "launch.sh").read_text()
    assert script.startswith("#!/bin/bash") and "--use_liger_kernel True" in script
    with pytest.raises(VramplanError, match="--fix-choice"):
        write_fix_files(report, tmp_path / "other", choice=len(ranked) + 1)


def test_corrected_script_edits_in_place_appends_and_removes():
    text = "#!/bin/bash\nA=1\ndeepspeed train.py \\\n    --bf16 True \\\n    --per_device_train_batch_size $A \\\n    --foo\n"
    out = corrected_script(text, 3, 6, (
        Change("script", "per_device_train_batch_size", "2"),
        Change("script", "gradient_checkpointing", "True"),
        Change("script", "foo", remove=True),
        Change("env", "NCCL_P2P_DISABLE", "1"),
        Change("script", "gradient_checkpointing_kwargs", '{"use_reentrant": true}'),
    ), ["# header"])
    lines = out.split("\n")
    assert lines[:2] == ["#!/bin/bash", "# header"]
    assert "export NCCL_P2P_DISABLE=1" in lines and "--per_device_train_batch_size 2 \\" in out
    assert "--foo" not in out and "--gradient_checkpointing True" in out
    assert "--gradient_checkpointing_kwargs '{\"use_reentrant\": true}'" in out
    from vramplan.adapters.launch_script import parse_launch_script

    spec = parse_launch_script(out)
    assert spec.micro_batch == 2 and spec.gradient_checkpointing and "foo" not in spec.args
    assert json.loads(spec.args["gradient_checkpointing_kwargs"]) == {"use_reentrant": True}


def test_fix_dir_for_8x7b_writes_the_method_change_and_offload_blocks(report_8x7b, tmp_path):
    chosen = report_8x7b.option_to_apply()
    assert chosen.kind in ("lora", "qlora") and chosen is min(
        (o for o in report_8x7b.alternatives if o.fits and o.kind in ("lora", "qlora")), key=lambda o: o.rank_key())
    written = write_fix_files(report_8x7b, tmp_path / "a")
    launch = read_launch_script(next(p for p in written if p.suffix == ".sh"))
    assert launch.bool_flag("lora_enable")
    offload = next(i for i, o in enumerate(report_8x7b.ranked_options, 1) if "offload_param" in o.ids)
    written = write_fix_files(report_8x7b, tmp_path / "b", choice=offload)
    config = json.loads(next(p for p in written if p.suffix == ".json").read_text())
    assert config["zero_optimization"]["offload_param"] == {"device": "cpu", "pin_memory": True}
    assert config["optimizer"]["type"] == "AdamW"
