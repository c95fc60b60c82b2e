"""The CUDA code paths of the runtime tools, run on the CPU through realistic fakes of torch's CUDA bindings.

These are not GPU tests (those are in test_gpu.py, marked ``gpu``, and never faked). Here the private
``torch._C._cuda_*`` functions that a CPU build of torch lacks are replaced by fakes with the signatures
of the installed torch (``torch/_C/__init__.pyi``), so that torch's own Python layer
(``torch.cuda.memory_reserved``, ``reset_peak_memory_stats``, ``set_device``, ``_record_memory_history``,
``_snapshot`` ...) still runs and checks the arguments vramplan passes: a device without an index, a
wrong keyword, a wrong snapshot key fail here as they would on a GPU. What stays unverified without a
GPU: the real allocator's numbers, NVML, the OOM observer being called by the allocator.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.torch,
              pytest.mark.skipif(torch.cuda.is_available(), reason="real CUDA here: test_gpu.py covers these paths")]

ROOT = Path(__file__).resolve().parents[2]
GiB = 2**30
MiB = 2**20


def _index(device: Any) -> int:
    from torch.cuda._utils import _get_device_index

    idx = _get_device_index(device, optional=True)
    assert isinstance(idx, int) and idx == 0, f"device {device!r} -> {idx!r}"
    return idx


class FakeCuda:
    """One fake 80 GiB device: allocator counters, peaks, the OOM observer and history calls."""

    total = 80 * GiB

    def __init__(self) -> None:
        self.allocated = 1 * GiB
        self.reserved = 2 * GiB
        self.peak_allocated = self.allocated
        self.peak_reserved = self.reserved
        self.observer: Any = None
        self.history_calls: list[tuple[Any, ...]] = []
        self.set_device_calls: list[int] = []
        self.synchronized = 0
        self.emptied = 0

    def alloc(self, nbytes: int) -> None:
        self.allocated += nbytes
        self.reserved = max(self.reserved, self.allocated + GiB // 2)
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    # torch._C bindings (signatures as in torch/_C/__init__.pyi)
    def memory_stats(self, device: int) -> dict[str, Any]:
        assert type(device) is int
        def stat(cur: int, peak: int) -> dict[str, dict[str, int]]:
            return {pool: {"current": cur, "peak": peak, "allocated": peak, "freed": peak - cur}
                    for pool in ("all", "small_pool", "large_pool")}
        return {"allocated_bytes": stat(self.allocated, self.peak_allocated),
                "reserved_bytes": stat(self.reserved, self.peak_reserved),
                "active_bytes": stat(self.allocated, self.peak_allocated), "num_ooms": 0}

    def reset_peak(self, device: int) -> None:
        assert type(device) is int
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

    def set_device(self, device: int) -> None:
        assert type(device) is int
        self.set_device_calls.append(device)

    def record_history(self, enabled: str | None, context: str | None, stacks: str, max_entries: int,
                       clear_history: bool, compile_context: bool, global_record_annotations: bool,
                       skip_actions: list[str]) -> None:
        self.history_calls.append((enabled, context, stacks, max_entries))

    def memory_snapshot(self, mempool_id: Any) -> dict[str, Any]:
        assert mempool_id is None
        frames = [{"filename": "/home/me/train.py", "line": 7, "name": "forward"}]
        return {"segments": [{"device": 0, "address": 0x7F00_0000_0000, "total_size": self.reserved, "stream": 0,
                              "segment_type": "large", "segment_pool_id": (0, 0), "allocated_size": self.allocated,
                              "active_size": self.allocated, "blocks": [
                                  {"address": 0x7F00_0000_0000, "size": self.allocated, "requested_size": self.allocated,
                                   "state": "active_allocated", "frames": frames},
                                  {"address": 0x7F00_0000_0000 + self.allocated, "size": self.reserved - self.allocated,
                                   "requested_size": 0, "state": "inactive", "frames": []}]}],
                "device_traces": [[]], "allocator_settings": {}}

    def attach_observer(self, fn: Any) -> None:
        self.observer = fn

    # public torch.cuda functions whose CPU build would call into the CUDA runtime
    def mem_get_info(self, device: Any = None) -> tuple[int, int]:
        _index(device)
        used = self.reserved + 600 * MiB  # context and cuBLAS outside the allocator
        return self.total - used, self.total

    def properties(self, device: Any = None) -> Any:
        _index(device)
        return SimpleNamespace(name="NVIDIA H200", total_memory=143771 * MiB, major=9, minor=0)

    def synchronize(self, device: Any = None) -> None:
        _index(device)
        self.synchronized += 1


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    from vramplan.monitor import oom

    fake = FakeCuda()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    for name, value in {"is_available": lambda: True, "is_initialized": lambda: True, "init": lambda: None,
                        "current_device": lambda: 0, "device_count": lambda: 1, "mem_get_info": fake.mem_get_info,
                        "get_device_properties": fake.properties, "synchronize": fake.synchronize}.items():
        monkeypatch.setattr(torch.cuda, name, value)
        if hasattr(torch.cuda.memory, name):  # torch.cuda.memory imported its own reference
            monkeypatch.setattr(torch.cuda.memory, name, value)
    for name, value in {"_cuda_memoryStats": fake.memory_stats, "_cuda_resetPeakMemoryStats": fake.reset_peak,
                        "_cuda_setDevice": fake.set_device, "_cuda_emptyCache": lambda: setattr(
                            fake, "emptied", fake.emptied + 1),
                        "_cuda_record_memory_history": fake.record_history,
                        "_cuda_memorySnapshot": fake.memory_snapshot,
                        "_cuda_attach_out_of_memory_observer": fake.attach_observer}.items():
        monkeypatch.setattr(torch._C, name, value, raising=False)
    # the observer is attached once per process: start (and end) this test with a clean slate
    monkeypatch.setattr(oom, "_OBSERVER_ATTACHED", False)
    monkeypatch.setattr(oom, "_ACTIVE", [])
    return fake


def test_cuda_source_through_torch_apis(fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch) -> None:
    from vramplan.monitor import CudaSource, default_source
    from vramplan.monitor.sources import _nvml_index

    assert isinstance(default_source(), CudaSource)
    for device in (None, 0, "cuda", "cuda:0", torch.device("cuda")):
        src = CudaSource(device, use_nvml=False)
        assert src.device == 0
    src.reset_peak()
    before = src.read()
    fake_cuda.alloc(3 * GiB)
    during = src.read()
    assert during.allocated_bytes - before.allocated_bytes == 3 * GiB
    assert during.peak_allocated_bytes == during.allocated_bytes and during.peak_reserved_bytes == during.reserved_bytes
    assert during.device_used_bytes == during.reserved_bytes + 600 * MiB  # cudaMemGetInfo without NVML
    src.reset_peak()
    assert src.read().peak_allocated_bytes == during.allocated_bytes
    assert src.capacity_bytes() == 143771 * MiB and src.describe()["gpu_name"] == "NVIDIA H200"
    # the fallback through the public functions gives the same numbers
    assert torch.cuda.memory_reserved(0) == during.reserved_bytes
    assert torch.cuda.max_memory_allocated(torch.device("cuda")) == during.allocated_bytes
    with pytest.raises(ValueError):
        CudaSource("cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert _nvml_index(0) == 3 and _nvml_index(1) == 5


def test_cuda_source_reads_nvml_through_pynvml(fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML through a fake ``pynvml`` module with nvidia-ml-py's function names (the GPU image has the real one)."""
    import types

    from vramplan.monitor import CudaSource

    handles: list[int] = []
    pynvml = types.ModuleType("pynvml")
    pynvml.nvmlInit = lambda: None
    pynvml.nvmlDeviceGetHandleByIndex = lambda i: handles.append(i) or ("handle", i)
    pynvml.nvmlSystemGetDriverVersion = lambda: b"580.159.04"
    pynvml.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(total=fake_cuda.total, free=fake_cuda.total - 7 * GiB,
                                                               used=7 * GiB)
    monkeypatch.setitem(sys.modules, "pynvml", pynvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    src = CudaSource(0)
    assert handles == [2] and src.describe()["device_used_from"] == "nvml" and src.describe()["driver"] == "580.159.04"
    assert src.read().device_used_bytes == 7 * GiB
    cal = _load_calibration()
    assert cal._env(torch)["driver"] == "580.159.04"


def test_flight_recorder_and_monitor_on_a_faked_oom(fake_cuda: FakeCuda, tmp_path: Path) -> None:
    from vramplan.monitor import MemoryMonitor

    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters())
    message = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which "
               "1.23 GiB is free. Including non-PyTorch memory, this process has 77.91 GiB memory in use.")
    with pytest.raises(torch.cuda.OutOfMemoryError):
        with MemoryMonitor(tmp_path, record_history=True, history_max_entries=5000) as mon:
            assert mon.source.name == "cuda" and mon.recorder is not None
            assert fake_cuda.history_calls == [("all", "all", "python", 5000)]
            assert fake_cuda.observer is not None
            mon.watch(model, opt)
            mon.begin_phase("forward")
            fake_cuda.alloc(10 * GiB)
            fake_cuda.observer(0, 2 * GiB, 78 * GiB, 1 * GiB)  # what the allocator calls before raising
            raise torch.cuda.OutOfMemoryError(message)
    assert fake_cuda.history_calls[-1][0] is None  # disarm stopped the history it started
    pickles = list(tmp_path.glob("oom_rank0_step0*.pickle"))
    reports = list(tmp_path.glob("oom_rank0_step0*.json"))
    assert len(pickles) == 1 and len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["phase"] == "forward" and report["reason"] == "oom observer"
    assert report["observer"]["requested_bytes"] == 2 * GiB
    assert report["message_numbers"]["tried_to_allocate_bytes"] == 2 * GiB  # the exception updated the same dump
    att = report["attribution"]
    assert att["reserved_bytes"] == fake_cuda.reserved and att["allocated_bytes"] == fake_cuda.allocated
    assert att["categories"]["activations"] == fake_cuda.allocated and att["split_by"] == "allocation stacks"
    summary = json.loads((tmp_path / "summary_rank0.json").read_text())
    assert summary["oom"]["snapshot_path"] == str(pickles[0]) and summary["oom"]["phase"] == "forward"
    assert summary["internal_errors"] == 0


def test_probe_session_on_a_bare_cuda_device(fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch) -> None:
    """``device="cuda"`` (no index) must work: ``torch.cuda.set_device`` refuses a device without one."""
    from vramplan.monitor import workload
    from vramplan.monitor.probe import search_largest
    from vramplan.monitor.probe_torch import ProbeSession, resolve_device

    class OomAbove:
        notes: list[str] = []

        def step(self, micro_batch: int) -> None:
            fake_cuda.alloc(micro_batch * GiB)
            if micro_batch > 5:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB.")

        def zero_grad(self) -> None:
            pass

    monkeypatch.setattr(workload, "build_workload", lambda config, scn, device, log=None: OomAbove())
    assert resolve_device("cuda") == torch.device("cuda", 0) and resolve_device("cpu") == torch.device("cpu")
    session = ProbeSession({}, None, steps=2, device="cuda")  # type: ignore[arg-type]
    assert session.device == torch.device("cuda", 0) and fake_cuda.set_device_calls == [0]
    result = search_largest(session.trial, limit=64)
    assert result.largest == 5 and not result.capped
    fits = result.trial(5)
    assert fits.peak_reserved_bytes and fits.device_used_bytes == fits.peak_reserved_bytes + 600 * MiB
    assert result.trial(6).error.startswith("OOM: CUDA out of memory")
    assert fake_cuda.synchronized >= 1 and fake_cuda.emptied >= 1


def _load_calibration():
    spec = importlib.util.spec_from_file_location("gpu_calibration", ROOT / "benchmarks" / "gpu_calibration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_calibration"] = module
    spec.loader.exec_module(module)
    return module


def test_calibration_execute_takes_its_cuda_branch(fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch) -> None:
    """``execute(device="cuda")`` with the model built (shrunk) on the CPU: the CUDA branch and its record."""
    pytest.importorskip("transformers")
    from vramplan.monitor import workload

    cal = _load_calibration()
    real_build = workload.build_workload
    monkeypatch.setattr(workload, "build_workload", lambda config, scn, device, log=None: real_build(config, scn, "cpu"))
    env = cal._env(torch)
    assert env["gpu_name"] == "NVIDIA H200" and env["compute_capability"] == "9.0"
    gpu_id = cal._catalog_gpu(env["gpu_name"], env["capacity_bytes"])
    assert gpu_id == "h200"
    run = next(r for r in cal.plan() if r.name == "qwen0.5b-full-s512-b8-nockpt")
    rec = cal.execute(run, gpu_id, env, 2, rehearsal=cal.Rehearsal(seq_len=16, micro_batch=1))
    assert rec["status"] == "ok", rec.get("error")
    m = rec["measured"]
    assert m["peak_reserved_bytes"] == fake_cuda.reserved and m["outside_allocator_bytes"] == 600 * MiB
    assert m["device_used_bytes"] == m["peak_reserved_bytes"] + 600 * MiB
    assert m["reserved_at_end_bytes"] == fake_cuda.reserved and m["nvml_device_used_bytes"] is not None
    assert rec["rehearsal"]["source"] == "cuda" and len(rec["step_time_s"]) == 2
    assert fake_cuda.synchronized >= 2 and fake_cuda.emptied >= 1
    json.dumps(rec)

    # an OOM in the warm-up step is recorded as such, and nothing is left behind
    def oom_build(config: Any, scn: Any, device: Any, log: Any = None) -> Any:
        w = real_build(config, scn, "cpu")
        w.step = lambda mb: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB."))
        return w

    monkeypatch.setattr(workload, "build_workload", oom_build)
    rec = cal.execute(run, gpu_id, env, 2, rehearsal=cal.Rehearsal(seq_len=16, micro_batch=1))
    assert rec["status"] == "oom" and rec["error"].startswith("CUDA out of memory. Tried to allocate 9.00 GiB")


def test_calibration_run_time_limit_and_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run past its time limit is recorded as ``timeout``; a SIGTERM ends the run in flight, skips the rest
    and still leaves a complete JSONL (renamed from ``.partial``)."""
    cal = _load_calibration()
    runs = cal.plan()[:3]
    sigterm_in: set[str] = set()

    def fake_execute(run: Any, gpu_id: str, env: Any, steps: int, *, seconds: Any = None, **kw: Any) -> dict[str, Any]:
        rec = {"run": run.name, "scenario": run.scenario(gpu_id), "env": env}
        try:
            with cal.time_limit(seconds):
                if run.name in sigterm_in:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(5)
                elif not sigterm_in:
                    time.sleep(5)
            rec["status"] = "ok"
        except cal.RunTimeout as exc:
            rec.update(status="timeout", error=str(exc))
        return rec

    monkeypatch.setattr(cal, "execute", fake_execute)
    monkeypatch.setattr(cal, "expected_seconds", lambda *a, **k: 0.0)
    out = tmp_path / "cal.jsonl"
    t0 = time.perf_counter()
    records = cal.run_all(runs, out, gpu_id="h200", env={}, steps=2, device="cuda", budget=100.0, deadline=0.3,
                          t_start=time.perf_counter())
    assert time.perf_counter() - t0 < 3
    assert [r["status"] for r in records] == ["timeout", "skipped", "skipped"]
    assert records[0]["error"] == "time limit" and "time budget" in records[1]["error"]
    assert out.exists() and not out.with_suffix(".jsonl.partial").exists()

    sigterm_in.add(runs[1].name)
    out2 = tmp_path / "cal2.jsonl"
    records = cal.run_all(runs, out2, gpu_id="h200", env={}, steps=2, device="cuda", budget=100.0, deadline=100.0,
                          t_start=time.perf_counter())
    assert [r["status"] for r in records] == ["ok", "timeout", "skipped"]
    assert records[1]["error"].startswith("terminated") and records[2]["error"].startswith("terminated")
    assert [json.loads(line)["run"] for line in out2.read_text().splitlines()] == [r.name for r in runs]
    assert signal.getsignal(signal.SIGTERM) is not cal._on_sigterm  # the previous handler is back
