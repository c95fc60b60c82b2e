"""GPU checks of the runtime tools: skipped without CUDA (never faked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

MiB = 2**20


def test_cuda_source_sees_allocations_and_peaks() -> None:
    from vramplan.monitor import CudaSource

    src = CudaSource()
    src.reset_peak()
    before = src.read()
    x = torch.empty(64 * MiB, dtype=torch.uint8, device="cuda")
    during = src.read()
    del x
    after = src.read()
    assert during.allocated_bytes - before.allocated_bytes >= 64 * MiB
    assert after.peak_allocated_bytes >= during.allocated_bytes
    assert during.device_used_bytes is not None and during.device_used_bytes >= during.reserved_bytes
    assert src.capacity_bytes() > 0 and src.describe()["gpu_name"]


def test_monitor_phases_on_gpu(tmp_path: Path) -> None:
    from vramplan.monitor import MemoryMonitor

    model = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 1024)).cuda()
    opt = torch.optim.AdamW(model.parameters())
    with MemoryMonitor(tmp_path) as mon:
        assert mon.source.name == "cuda"
        mon.watch(model, opt)
        for _ in range(5):
            model(torch.randn(256, 1024, device="cuda")).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
            mon.step()
    phases = mon.summary["measured"]["phases"]
    assert phases["backward"]["peak_allocated_bytes"] > phases["forward"]["peak_allocated_bytes"] // 2
    assert not mon.summary["leak"]["leak"]


def test_flight_recorder_on_a_real_oom(tmp_path: Path) -> None:
    from vramplan.monitor import MemoryMonitor

    total = torch.cuda.get_device_properties(0).total_memory
    torch.ones(1, device="cuda")  # initialise CUDA so the observer can attach
    with pytest.raises(torch.cuda.OutOfMemoryError):
        with MemoryMonitor(tmp_path, record_history=True) as mon:
            mon.begin_phase("forward")
            keep = torch.empty(MiB, device="cuda")
            torch.empty(2 * total, dtype=torch.uint8, device="cuda")
            del keep
    reports = list(tmp_path.glob("oom_rank0_step0*.json"))
    assert reports and list(tmp_path.glob("oom_rank0_step0*.pickle"))
    report = json.loads(reports[0].read_text())
    assert report["attribution"]["reserved_bytes"] > 0 and report["phase"] == "forward"
    summary = json.loads((tmp_path / "summary_rank0.json").read_text())
    assert summary["oom"]["snapshot_path"]


def test_probe_finds_a_micro_batch_on_gpu(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from vramplan.adapters.scenario_file import scenario_from_dict
    from vramplan.monitor.probe import search_largest
    from vramplan.monitor.probe_torch import ProbeSession

    cfg = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1024, "max_position_embeddings": 512}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    scn = scenario_from_dict({"model": str(path), "hardware": {"gpu": "h100-80g"}, "parallel": {"engine": "single"},
                              "train": {"seq_len": 256, "attention": "sdpa"}})
    session = ProbeSession(cfg, scn, steps=2, device="cuda")
    result = search_largest(session.trial, limit=8)
    assert result.largest == 8 and result.trials[-1].peak_reserved_bytes > 0


def _calibration_module():
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("gpu_calibration", root / "benchmarks" / "gpu_calibration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_calibration"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["qwen0.5b-full-s2048-b4-ckpt", "qwen1.5b-lora-s4096-b4-ckpt",
                                  "olmoe4l-full-s2048-b2-nockpt", "llava0.5b-full-s2048-b4-ckpt",
                                  "fsdp2x4-qwen1.5b-full-s2048-b2-ckpt"])
def test_calibration_execute_on_gpu_with_a_shrunk_model(name: str) -> None:
    """gpu_calibration.execute() on CUDA (CudaSource, NVML, nvidia-smi, the fake process group on a GPU), tiny model:
    pins down a failure of the real calibration to the code path rather than the size."""
    pytest.importorskip("transformers")
    cal = _calibration_module()
    run = next(r for r in cal.plan() if r.name == name)
    if [m for m in run.needs if not cal._have(m)]:
        pytest.skip(f"{run.needs} not installed")
    env = cal._env(torch)
    rec = cal.execute(run, cal._catalog_gpu(env["gpu_name"], env["capacity_bytes"]), env, 2, device="cuda",
                      rehearsal=cal.Rehearsal(seq_len=128, micro_batch=2), seconds=120)
    assert rec["status"] == "ok", rec.get("error")
    m = rec["measured"]
    assert 0 < m["peak_allocated_bytes"] <= m["peak_reserved_bytes"] <= m["device_used_bytes"]
    assert m["outside_allocator_bytes"] is not None and m["reserved_at_end_bytes"] is not None
    assert rec["rehearsal"]["source"] == "cuda" and rec["rehearsal"]["device"] == "cuda"
    assert set(rec["phases"]) == {"forward", "backward", "optimizer"} and len(rec["step_time_s"]) == 2
    json.dumps(rec)
