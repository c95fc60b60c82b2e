"""OOM flight recorder: attribution of a synthetic allocator snapshot, the OOM message, the dump files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from vramplan.core.breakdown import KEYS
from vramplan.monitor import FlightRecorder, attribute_snapshot, parse_oom_message
from vramplan.monitor.leaks import new_allocation_sites
from vramplan.monitor.oom import against_prediction, classify_frames, predicted_categories

MiB = 2**20
USER = {"filename": "/home/me/train.py", "line": 42, "name": "forward"}
BWD = {"filename": "/x/torch/autograd/graph.py", "line": 1, "name": "_engine_run_backward"}
OPT = {"filename": "/x/torch/optim/adamw.py", "line": 9, "name": "_multi_tensor_adamw"}


def snapshot(frames: bool = True) -> dict:
    """Two segments: params, grads and optimizer state at known addresses, then unknown blocks."""
    f = (lambda fr: [fr]) if frames else (lambda fr: [])
    return {
        "segments": [
            {"device": 0, "address": 0x1000_0000, "total_size": 100 * MiB, "stream": 0, "segment_type": "large",
             "blocks": [
                 {"address": 0x1000_0000, "size": 40 * MiB, "state": "active_allocated", "frames": []},  # params
                 {"address": 0x1000_0000 + 40 * MiB, "size": 20 * MiB, "state": "active_allocated", "frames": []},  # grads
                 {"address": 0x1000_0000 + 60 * MiB, "size": 30 * MiB, "state": "active_allocated", "frames": []},  # adam
                 {"address": 0x1000_0000 + 90 * MiB, "size": 10 * MiB, "state": "inactive", "frames": []},
             ]},
            {"device": 0, "address": 0x2000_0000, "total_size": 64 * MiB, "stream": 0, "segment_type": "large",
             "blocks": [  # no 'address' keys: derived from the segment start
                 {"size": 24 * MiB, "state": "active_allocated", "frames": f(USER)},
                 {"size": 8 * MiB, "state": "active_allocated", "frames": f(BWD)},
                 {"size": 4 * MiB, "state": "active_allocated", "frames": f(OPT)},
                 {"size": 2 * MiB, "state": "active_awaiting_free", "frames": []},
                 {"size": 26 * MiB, "state": "inactive", "frames": []},
             ]},
            {"device": 1, "address": 0x3000_0000, "total_size": 999 * MiB, "blocks": []},  # other GPU
        ]
    }


SETS = {
    "params": [(0x1000_0000, 10 * MiB), (0x1000_0000 + 10 * MiB, 30 * MiB)],
    "grads": [(0x1000_0000 + 40 * MiB, 20 * MiB)],
    "optimizer": [(0x1000_0000 + 60 * MiB, 15 * MiB), (0x1000_0000 + 75 * MiB, 15 * MiB)],
}


def test_attribution_with_allocation_stacks() -> None:
    att = attribute_snapshot(snapshot(), SETS, phase="backward", device=0)
    cats = att["categories"]
    assert cats["params"] == 40 * MiB and cats["grads"] == 20 * MiB and cats["optimizer"] == 30 * MiB
    assert cats["activations"] == 24 * MiB
    assert cats["temporaries"] == 8 * MiB + 4 * MiB + 2 * MiB  # backward, optimizer, pending free
    assert att["reserved_bytes"] == 164 * MiB
    assert att["allocated_bytes"] == 126 * MiB
    assert att["allocator_slack_bytes"] == 36 * MiB
    assert att["split_by"] == "allocation stacks"
    assert att["largest_blocks"][0]["size_bytes"] == 40 * MiB and att["largest_blocks"][0]["category"] == "params"
    assert "train.py:42" in next(b["site"] for b in att["largest_blocks"] if b["category"] == "activations")
    assert all(isinstance(v, int) for v in cats.values())


def test_attribution_falls_back_to_the_phase_without_stacks() -> None:
    fwd = attribute_snapshot(snapshot(frames=False), SETS, phase="forward", device=0)
    assert fwd["categories"]["activations"] == 36 * MiB and fwd["split_by"] == "phase"
    opt = attribute_snapshot(snapshot(frames=False), SETS, phase="optimizer", device=0)
    assert opt["categories"]["temporaries"] == 38 * MiB
    unknown = attribute_snapshot(snapshot(frames=False), {}, phase=None, device=0)
    assert unknown["categories"]["unattributed"] == 126 * MiB


def test_classify_frames() -> None:
    assert classify_frames([]) is None
    assert classify_frames([USER]) == "activations"
    assert classify_frames([BWD, USER]) == "temporaries"
    assert classify_frames([OPT]) == "temporaries"


def test_against_prediction_uses_the_shared_breakdown_keys() -> None:
    breakdown = dict.fromkeys(KEYS, 0)
    breakdown.update({"model_states/params": 41 * MiB, "model_states/optimizer": 20 * MiB, "model_states/master": 10 * MiB,
                      "activations/llm": 30 * MiB, "temporaries/backward": 5 * MiB, "buffers/ddp_buckets": 3 * MiB,
                      "overhead/allocator": 7 * MiB, "overhead/cuda_context": 500 * MiB})
    pred = predicted_categories(breakdown)
    assert pred["optimizer"] == 30 * MiB and pred["temporaries"] == 8 * MiB and pred["allocator_slack"] == 7 * MiB
    prediction = {"peak_phase": "backward", "phases": {"backward": {"breakdown": breakdown}}}
    rows = against_prediction(attribute_snapshot(snapshot(), SETS, phase="backward", device=0), prediction)
    by = {r["category"]: r for r in rows}
    assert by["params"]["diff_bytes"] == -1 * MiB
    assert by["activations"]["predicted_bytes"] == 30 * MiB and by["activations"]["measured_bytes"] == 24 * MiB
    assert against_prediction({"categories": {}}, None) == []


def test_parse_oom_message() -> None:
    text = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which "
            "1.23 GiB is free. Including non-PyTorch memory, this process has 77.91 GiB memory in use. Of the "
            "allocated memory 75.02 GiB is allocated by PyTorch, and 512.00 MiB is reserved by PyTorch but unallocated.")
    n = parse_oom_message(text)
    assert n["tried_to_allocate_bytes"] == 2 * 2**30
    assert n["total_capacity_bytes"] == int(79.15 * 2**30)
    assert n["free_bytes"] == int(1.23 * 2**30)
    assert n["process_in_use_bytes"] == int(77.91 * 2**30)
    assert n["allocated_by_pytorch_bytes"] == int(75.02 * 2**30)
    assert n["reserved_unallocated_bytes"] == 512 * MiB
    assert n["gpu_index"] == 0
    assert parse_oom_message("something else") == {}


def test_flight_recorder_dump_writes_pickle_and_report_never_overwriting(tmp_path: Path) -> None:
    rec = FlightRecorder(tmp_path, rank=2, device=0)
    rec.phase_fn = lambda: "forward"
    rec.step_fn = lambda: 7
    report = rec.dump("test", snapshot=snapshot())
    assert report is not None
    pickle_path, json_path = Path(report["snapshot_path"]), Path(report["report_path"])
    assert pickle_path.name == "oom_rank2_step7.pickle" and json_path.name == "oom_rank2_step7.json"
    assert pickle.loads(pickle_path.read_bytes())["segments"][0]["total_size"] == 100 * MiB
    saved = json.loads(json_path.read_text())
    assert saved["attribution"]["phase"] == "forward" and "memory_viz" in saved["viewer"]
    # the same step again (observer first, then the exception): the report gains the message, no new file
    again = rec.dump("exception", exc=RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB. GPU 0 ..."))
    assert again is report and again["message_numbers"]["tried_to_allocate_bytes"] == 2**30
    assert len(list(tmp_path.glob("*.pickle"))) == 1
    # another recorder in the same folder never overwrites
    other = FlightRecorder(tmp_path, rank=2)
    other.step_fn = lambda: 7
    assert Path(other.dump("again", snapshot=snapshot())["snapshot_path"]).name == "oom_rank2_step7-2.pickle"


def test_flight_recorder_failures_are_swallowed(tmp_path: Path) -> None:
    rec = FlightRecorder(tmp_path / "file-not-dir")
    (tmp_path / "file-not-dir").write_text("x")
    assert rec.dump("test", snapshot=snapshot()) is None
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        assert rec.arm() is False


def test_new_allocation_sites_diff_two_snapshots() -> None:
    before = snapshot()
    after = snapshot()
    after["segments"][1]["blocks"][4] = {"size": 26 * MiB, "state": "active_allocated", "frames": [USER]}
    sites = new_allocation_sites(before, after, device=0)
    assert sites == [{"site": "/home/me/train.py:42 (forward)", "bytes": 26 * MiB, "blocks": 1}]
    assert new_allocation_sites(None, before, device=0)[0]["bytes"] >= 24 * MiB
