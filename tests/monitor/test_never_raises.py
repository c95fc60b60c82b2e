"""The monitor never raises into the training loop; the loop's own errors pass through unchanged."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from vramplan.monitor import CallableSource, FakeSource, MemoryMonitor, Sample
from vramplan.monitor.guard import MAX_FAILURES


class Broken(FakeSource):
    """A source whose reads fail after ``ok`` reads."""

    def __init__(self, ok: int) -> None:
        super().__init__([Sample(allocated_bytes=1, reserved_bytes=1)])
        self.ok = ok
        self.calls = 0

    def read(self, rss: bool = True) -> Sample:
        self.calls += 1
        if self.calls > self.ok:
            raise RuntimeError("driver went away")
        return super().read(rss)


def test_failing_source_never_raises_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vramplan.monitor")
    with MemoryMonitor(tmp_path, source=Broken(ok=3)) as mon:
        for _ in range(50):  # a training loop that keeps going
            mon.begin_phase("forward")
            mon.begin_phase("backward")
            mon.end_phase()
            mon.step()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("begin_phase failed" in m for m in messages) == 1  # once per method, not per step
    assert any("monitoring stopped" in m for m in messages)
    assert mon._failures >= MAX_FAILURES


def test_source_returning_garbage_is_contained(tmp_path: Path) -> None:
    source = CallableSource(lambda: "not a number")  # type: ignore[arg-type, return-value]
    with MemoryMonitor(tmp_path, source=source) as mon:
        mon.begin_phase("forward")
        mon.step()
    assert mon._failures >= 1


def test_unwritable_summary_does_not_raise(tmp_path: Path) -> None:
    mon = MemoryMonitor(tmp_path, source=FakeSource([5]))
    mon.start()
    mon.step()
    mon.summary_path = tmp_path / "missing-folder" / "summary.json"
    assert mon.close() is None  # logged, not raised
    assert mon._failures == 1


def test_errors_of_the_loop_propagate_and_the_summary_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad batch"):
        with MemoryMonitor(tmp_path, source=FakeSource([5])) as mon:
            mon.begin_phase("forward")
            raise ValueError("bad batch")
    summary = json.loads((tmp_path / "summary_rank0.json").read_text())
    assert summary["steps"] == 1 and summary["oom"] is None
    events = [json.loads(line) for line in (tmp_path / "memory_rank0.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "exception" and "bad batch" in e["message"] for e in events)


def test_calls_before_start_and_after_close_are_ignored(tmp_path: Path) -> None:
    mon = MemoryMonitor(tmp_path, source=FakeSource([5]))
    mon.begin_phase("forward")
    mon.step()
    mon.close()
    assert not (tmp_path / "memory_rank0.jsonl").exists()
    with mon:
        mon.step()
    mon.step()
    mon.begin_phase("forward")
    assert mon.summary is not None and mon.summary["steps"] == 1


def test_hooks_on_a_real_model_mark_phases(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with MemoryMonitor(tmp_path, source=FakeSource([Sample(allocated_bytes=1, reserved_bytes=1)])) as mon:
        mon.watch(model, opt)
        for _ in range(3):
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
            mon.step()
        model.eval()
        with torch.no_grad():
            model(torch.randn(4, 8))  # evaluation: no phase
        mon.step()
    recs = [json.loads(line) for line in (tmp_path / "memory_rank0.jsonl").read_text().splitlines()]
    phases = [(r["step"], r["phase"]) for r in recs if r["kind"] == "phase"]
    assert phases == [(s, p) for s in range(3) for p in ("forward", "backward", "optimizer")]
