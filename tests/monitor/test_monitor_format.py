"""MemoryMonitor with a scripted source: JSONL records, summary, prediction, headroom warning, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramplan.core.errors import VramplanError
from vramplan.monitor import FakeSource, MemoryMonitor, Sample
from vramplan.monitor.report import load_run, run_report

GiB = 2**30


def _sample(alloc: int, res: int, used: int | None = None) -> Sample:
    return Sample(allocated_bytes=alloc, reserved_bytes=res, peak_allocated_bytes=alloc, peak_reserved_bytes=res,
                  device_used_bytes=used, host_rss_bytes=3 * GiB)


def _run(tmp_path: Path, steps: int = 5, **kw) -> MemoryMonitor:
    source = FakeSource([_sample(10 * GiB + i * GiB // 8, 12 * GiB + i * GiB // 8, 13 * GiB) for i in range(100)],
                        capacity_bytes=80 * GiB)
    mon = MemoryMonitor(tmp_path, source=source, **kw)
    with mon:
        for _ in range(steps):
            with mon.phase("forward"):
                pass
            with mon.phase("backward"):
                pass
            with mon.phase("optimizer"):
                pass
            mon.step()
    return mon


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_records_and_summary(tmp_path: Path) -> None:
    mon = _run(tmp_path)
    recs = _records(tmp_path / "memory_rank0.jsonl")
    kinds = [r["kind"] for r in recs]
    assert kinds[0] == "header" and kinds[-1] == "end"
    assert kinds.count("step") == 5 and kinds.count("phase") == 15
    header = recs[0]
    assert header["schema_version"] == 1 and header["rank"] == 0 and header["capacity_bytes"] == 80 * GiB
    for rec in recs:
        for key, value in rec.items():
            if key.endswith("_bytes") and value is not None:
                assert isinstance(value, int), (key, value)
    phase = next(r for r in recs if r["kind"] == "phase")
    assert set(phase) >= {"step", "phase", "micro_steps", "duration_s", "allocated_bytes", "reserved_bytes",
                          "peak_allocated_bytes", "peak_reserved_bytes", "device_used_bytes"}
    summary = json.loads((tmp_path / "summary_rank0.json").read_text())
    assert summary == mon.summary
    assert summary["steps"] == 5
    assert set(summary["measured"]["phases"]) == {"forward", "backward", "optimizer"}
    assert summary["overhead"]["fraction"] is not None
    assert summary["internal_errors"] == 0


def test_rank_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    _run(tmp_path, steps=2)
    assert (tmp_path / "memory_rank3.jsonl").is_file() and (tmp_path / "summary_rank3.json").is_file()
    assert _records(tmp_path / "memory_rank3.jsonl")[0]["world_size"] == 4


def test_existing_log_is_never_overwritten(tmp_path: Path) -> None:
    _run(tmp_path, steps=1)
    with pytest.raises(VramplanError, match="already exists"):
        MemoryMonitor(tmp_path, source=FakeSource([1]))
    MemoryMonitor(tmp_path, source=FakeSource([1]), overwrite=True)  # explicit opt-in


def test_bad_arguments_raise_before_training(tmp_path: Path) -> None:
    with pytest.raises(VramplanError, match="headroom_warning"):
        MemoryMonitor(tmp_path, headroom_warning=2.0)
    with pytest.raises(VramplanError, match="no such file or built-in scenario"):
        MemoryMonitor(tmp_path, scenario="no-such-scenario.yaml")


def test_prediction_comparison_and_warnings(tmp_path: Path) -> None:
    scenario = {"model": "llama-3.1-8b", "hardware": {"gpu": "a100-80g"}, "parallel": {"engine": "single"},
                "train": {"method": "lora", "micro_batch": 1, "seq_len": 1024}}
    source = FakeSource([_sample(70 * GiB, 77 * GiB, 78 * GiB)], capacity_bytes=80 * GiB)
    with MemoryMonitor(tmp_path, source=source, scenario=scenario, headroom_warning=0.05) as mon:
        for _ in range(3):
            mon.begin_phase("forward")
            mon.begin_phase("backward")
            mon.begin_phase("optimizer")
            mon.step()
    summary = mon.summary
    assert summary["prediction"]["peak_reserved_bytes"] > 0
    comp = summary["comparison"]
    assert set(comp) == {"forward", "backward", "optimizer", "overall"}
    row = comp["overall"]["reserved"]
    assert row["measured_bytes"] == 77 * GiB
    assert row["error"] == pytest.approx((row["predicted_bytes"] - 77 * GiB) / (77 * GiB))
    kinds = {w["kind"] for w in summary["warnings"]}
    assert "low_headroom" in kinds  # 2 GiB left of 80 < 5 %
    assert summary["min_headroom_bytes"] == 2 * GiB
    events = [r for r in _records(tmp_path / "memory_rank0.jsonl") if r["kind"] == "event"]
    assert any(e["event"] == "low_headroom" for e in events)
    # the report reads the same folder back
    rep = run_report(load_run(tmp_path)[0])
    assert rep["comparison"]["overall"]["reserved"]["measured_bytes"] == 77 * GiB


def test_gradient_accumulation_aggregates_micro_steps(tmp_path: Path) -> None:
    source = FakeSource([_sample(i * GiB, i * GiB) for i in range(1, 50)], capacity_bytes=80 * GiB)
    with MemoryMonitor(tmp_path, source=source) as mon:
        for _ in range(4):  # 4 micro-steps, one optimizer step
            mon.begin_phase("forward")
            mon.begin_phase("backward")
        mon.begin_phase("optimizer")
        mon.step()
    phases = [r for r in _records(tmp_path / "memory_rank0.jsonl") if r["kind"] == "phase"]
    by_name = {r["phase"]: r for r in phases}
    assert by_name["forward"]["micro_steps"] == 4 and by_name["backward"]["micro_steps"] == 4
    assert by_name["backward"]["peak_reserved_bytes"] >= by_name["forward"]["peak_reserved_bytes"]
