"""OOM flight recorder: on a CUDA out-of-memory error, dump the allocator snapshot and explain it.

Owns:

- ``attribute_snapshot``: a ``torch.cuda.memory._snapshot()`` dict (segments -> blocks) and the
  address ranges of known tensor sets (model parameters, ``.grad``, ``optimizer.state``) -> bytes per
  category (params, grads, optimizer, activations, temporaries, unattributed) plus the allocator's
  slack (reserved but not allocated). Blocks outside the known sets are split by their allocation
  stack when memory history was recorded (backward / optimizer frames -> temporaries, others ->
  activations), else by the phase the OOM happened in. Pure dict logic, tested on the CPU;
- ``against_prediction``: the same categories from a vramplan breakdown, side by side;
- ``parse_oom_message``: the numbers in PyTorch's "CUDA out of memory. Tried to allocate ..." text;
- ``FlightRecorder``: arms ``torch.cuda.memory._record_memory_history`` (optional) and the private
  ``torch._C._cuda_attach_out_of_memory_observer`` (guarded: only once CUDA is initialised, see
  pytorch#107330), and on an OOM writes ``oom_rank{R}_step{S}.pickle`` (open it at
  https://pytorch.org/memory_viz) and ``oom_rank{R}_step{S}.json`` (the attribution and the
  prediction). It never raises.

torch is imported only inside ``FlightRecorder`` methods.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..core.units import GiB, KiB, MiB

log = logging.getLogger("vramplan.monitor")

CATEGORIES = ("params", "grads", "optimizer", "activations", "temporaries", "unattributed")

PREDICTED_KEYS: dict[str, tuple[str, ...]] = {
    "params": ("model_states/params",),
    "grads": ("model_states/grads",),
    "optimizer": ("model_states/optimizer", "model_states/master"),
    "activations": ("activations/",),
    "temporaries": ("temporaries/", "buffers/", "overhead/cublas"),
}
"""Which breakdown keys (exact, or prefixes ending in '/') make up each category."""

_BACKWARD_MARKERS = ("backward", "autograd::engine", "_engine_run_backward", "evaluate_function")


def _frames_text(frames: Iterable[Mapping[str, Any]]) -> str:
    return " | ".join(f"{f.get('filename', '')}:{f.get('name', '')}" for f in frames).lower()


def classify_frames(frames: list[Mapping[str, Any]]) -> str | None:
    """'temporaries' for blocks allocated in backward or optimizer code, 'activations' else; None without frames."""
    if not frames:
        return None
    text = _frames_text(frames)
    if any(m in text for m in _BACKWARD_MARKERS):
        return "temporaries"
    names = [str(f.get("filename", "")).lower() for f in frames]
    if any("torch/optim/" in n or "/optim/" in n for n in names):
        return "temporaries"
    return "activations"


def _phase_fallback(phase: str | None) -> str:
    if phase in ("forward", "backward"):
        return "activations"
    if phase == "optimizer":
        return "temporaries"
    return "unattributed"


def _interval_index(tensor_sets: Mapping[str, Iterable[tuple[int, int]]]) -> list[tuple[int, int, str]]:
    """Sorted (start, end, category) of known storages; earlier sets win on identical ranges."""
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int, str]] = []
    for category in ("params", "grads", "optimizer"):
        for ptr, nbytes in tensor_sets.get(category, ()):
            if nbytes <= 0 or (ptr, nbytes) in seen:
                continue
            seen.add((ptr, nbytes))
            out.append((int(ptr), int(ptr) + int(nbytes), category))
    out.sort()
    return out


def _known_category(start: int, end: int, index: list[tuple[int, int, str]]) -> str | None:
    """Category with the most bytes of known storages overlapping [start, end)."""
    import bisect

    i = bisect.bisect_left(index, (start, -1, ""))
    # a storage starting before the block may still overlap it
    while i > 0 and index[i - 1][1] > start:
        i -= 1
    overlap: dict[str, int] = {}
    while i < len(index) and index[i][0] < end:
        s, e, cat = index[i]
        if e > start:
            overlap[cat] = overlap.get(cat, 0) + min(e, end) - max(s, start)
        i += 1
    if not overlap:
        return None
    return max(overlap.items(), key=lambda kv: kv[1])[0]


def attribute_snapshot(
    snapshot: Mapping[str, Any],
    tensor_sets: Mapping[str, Iterable[tuple[int, int]]] | None = None,
    *,
    phase: str | None = None,
    device: int | None = None,
    top: int = 10,
) -> dict[str, Any]:
    """Bytes per category of the allocator state in ``snapshot`` (module docstring). All ints."""
    index = _interval_index(tensor_sets or {})
    categories = dict.fromkeys(CATEGORIES, 0)
    reserved = allocated = pending = 0
    used_frames = False
    largest: list[dict[str, Any]] = []
    num_segments = 0
    for seg in snapshot.get("segments", []):
        if device is not None and seg.get("device", device) != device:
            continue
        num_segments += 1
        reserved += int(seg.get("total_size", 0))
        address = int(seg.get("address", 0))
        for block in seg.get("blocks", []):
            size = int(block.get("size", 0))
            start = int(block.get("address", address))
            address = start + size
            state = block.get("state", "")
            if state == "inactive":
                continue
            if state == "active_awaiting_free":
                pending += size
                categories["temporaries"] += size
                continue
            allocated += size
            frames = list(block.get("frames") or [])
            cat = _known_category(start, start + size, index)
            if cat is None:
                cat = classify_frames(frames)
                if cat is None:
                    cat = _phase_fallback(phase)
                else:
                    used_frames = True
            categories[cat] += size
            largest.append({"size_bytes": size, "category": cat, "address": start,
                            "site": _site(frames)})
    largest.sort(key=lambda b: -b["size_bytes"])
    return {
        "categories": categories,
        "allocated_bytes": allocated,
        "pending_free_bytes": pending,
        "reserved_bytes": reserved,
        "allocator_slack_bytes": reserved - allocated - pending,
        "num_segments": num_segments,
        "phase": phase,
        "split_by": "allocation stacks" if used_frames else ("phase" if phase else "none"),
        "largest_blocks": largest[:top],
    }


def _site(frames: list[Mapping[str, Any]]) -> str:
    """The innermost frame outside torch internals, as ``file:line (function)``."""
    for f in frames:
        name = str(f.get("filename", ""))
        if not name or "/torch/" in name or name.startswith("??") or "site-packages/torch" in name:
            continue
        return f"{name}:{f.get('line', '?')} ({f.get('name', '?')})"
    if frames:
        f = frames[0]
        return f"{f.get('filename', '?')}:{f.get('line', '?')} ({f.get('name', '?')})"
    return "unknown (enable memory history for allocation sites)"


def predicted_categories(breakdown: Mapping[str, int]) -> dict[str, int]:
    """A vramplan breakdown grouped into the flight recorder's categories."""
    out = dict.fromkeys(PREDICTED_KEYS, 0)
    for key, value in breakdown.items():
        for cat, patterns in PREDICTED_KEYS.items():
            if any(key == p or (p.endswith("/") and key.startswith(p)) for p in patterns):
                out[cat] += int(value)
                break
    out["allocator_slack"] = int(breakdown.get("overhead/allocator", 0))
    return out


def against_prediction(attribution: Mapping[str, Any], prediction: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Rows (category, measured_bytes, predicted_bytes, diff_bytes) for the phase the OOM happened in."""
    if not prediction:
        return []
    phase = attribution.get("phase") or prediction.get("peak_phase")
    phases = prediction.get("phases", {})
    breakdown = (phases.get(phase) or phases.get(prediction.get("peak_phase"), {})).get("breakdown", {})
    predicted = predicted_categories(breakdown)
    measured = dict(attribution["categories"])
    measured["allocator_slack"] = attribution["allocator_slack_bytes"]
    rows = []
    for cat in (*PREDICTED_KEYS, "allocator_slack", "unattributed"):
        m = int(measured.get(cat, 0))
        p = predicted.get(cat)
        rows.append({"category": cat, "measured_bytes": m, "predicted_bytes": p,
                     "diff_bytes": None if p is None else m - p})
    return rows


_UNITS = {"b": 1, "kib": KiB, "mib": MiB, "gib": GiB, "tib": 1024 * GiB, "kb": KiB, "mb": MiB, "gb": GiB}
_SIZE = r"([\d.]+)\s*([KMGT]i?B|B)"
_PATTERNS = {
    "tried_to_allocate_bytes": rf"Tried to allocate {_SIZE}",
    "total_capacity_bytes": rf"total capacity of {_SIZE}",
    "free_bytes": rf"of which {_SIZE} is free",
    "process_in_use_bytes": rf"this process has {_SIZE} memory in use",
    "allocated_by_pytorch_bytes": rf"{_SIZE} is allocated by PyTorch",
    "reserved_unallocated_bytes": rf"{_SIZE} is reserved by PyTorch but unallocated",
}


def parse_oom_message(text: str) -> dict[str, int]:
    """Numbers of PyTorch's CUDA OOM message as int bytes (2-decimal precision of the message)."""
    out: dict[str, int] = {}
    for key, pattern in _PATTERNS.items():
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            out[key] = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    m = re.search(r"GPU (\d+)", text)
    if m:
        out["gpu_index"] = int(m.group(1))
    return out


def tensor_sets_of(model: Any = None, optimizer: Any = None) -> dict[str, list[tuple[int, int]]]:
    """(storage pointer, nbytes) of parameters, gradients and optimizer tensors (master copies count as optimizer)."""
    import torch

    def storage(t: Any) -> tuple[int, int] | None:
        local = getattr(t, "_local_tensor", None)  # FSDP2 / tensor-parallel DTensor: this rank's shard
        if isinstance(local, torch.Tensor):
            t = local
        if not isinstance(t, torch.Tensor) or t.device.type != "cuda":
            return None
        try:
            st = t.untyped_storage()
            return int(st.data_ptr()), int(st.nbytes())
        except Exception:
            return None

    sets: dict[str, list[tuple[int, int]]] = {"params": [], "grads": [], "optimizer": []}
    params: list[Any] = list(model.parameters()) if model is not None and hasattr(model, "parameters") else []
    param_ids = {id(p) for p in params}
    for p in params:
        for cat, t in (("params", p), ("grads", p.grad)):
            s = storage(t)
            if s:
                sets[cat].append(s)
    inner = getattr(optimizer, "optimizer", None) if optimizer is not None and not hasattr(optimizer, "state") else optimizer
    if inner is not None:
        for group in getattr(inner, "param_groups", []):
            for p in group.get("params", []):
                if id(p) not in param_ids:
                    s = storage(p)
                    if s:
                        sets["optimizer"].append(s)
                    s = storage(getattr(p, "grad", None))
                    if s:
                        sets["grads"].append(s)
        for state in getattr(inner, "state", {}).values():
            for value in (state.values() if isinstance(state, Mapping) else ()):
                s = storage(value)
                if s:
                    sets["optimizer"].append(s)
    return sets


def _unique_path(folder: Path, stem: str, suffix: str) -> Path:
    path = folder / f"{stem}{suffix}"
    n = 2
    while path.exists():
        path = folder / f"{stem}-{n}{suffix}"
        n += 1
    return path


_OBSERVER_LOCK = threading.Lock()
_OBSERVER_ATTACHED = False
_ACTIVE: list["FlightRecorder"] = []


def _dispatch_oom(device: int, alloc: int, device_alloc: int, device_free: int) -> None:
    for rec in list(_ACTIVE):
        rec._on_observer(device, alloc, device_alloc, device_free)


class FlightRecorder:
    """Dumps a memory snapshot and an attribution report on a CUDA OOM (module docstring)."""

    def __init__(self, run_dir: str | Path, rank: int = 0, *, prediction: Mapping[str, Any] | None = None,
                 record_history: bool = False, max_entries: int = 100_000, device: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.prediction = prediction
        self.record_history = record_history
        self.max_entries = max_entries
        self.device = device
        self.model: Any = None
        self.optimizer: Any = None
        self.phase_fn: Callable[[], str | None] = lambda: None
        self.step_fn: Callable[[], int] = lambda: 0
        self.dumps: list[dict[str, Any]] = []
        self._history_started = False
        self._armed = False
        self._dumped_steps: set[int] = set()

    def arm(self) -> bool:
        """Start history recording (if asked) and attach the OOM observer; False without CUDA."""
        global _OBSERVER_ATTACHED
        try:
            import torch

            if not torch.cuda.is_available():
                return False
            if self.record_history:
                torch.cuda.memory._record_memory_history(enabled="all", context="all", stacks="python",
                                                         max_entries=self.max_entries)
                self._history_started = True
            observer = getattr(torch._C, "_cuda_attach_out_of_memory_observer", None)
            with _OBSERVER_LOCK:
                if observer is not None and not _OBSERVER_ATTACHED and torch.cuda.is_initialized():
                    observer(_dispatch_oom)
                    _OBSERVER_ATTACHED = True
                _ACTIVE.append(self)
            self._armed = True
            return True
        except Exception as exc:  # never raise into training
            log.warning("vramplan: could not arm the OOM flight recorder (%s: %s)", type(exc).__name__, exc)
            return False

    def disarm(self) -> None:
        """Detach from the observer and stop the history this recorder started."""
        with _OBSERVER_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
        if self._history_started:
            try:
                import torch

                torch.cuda.memory._record_memory_history(enabled=None)
            except Exception:
                pass
            self._history_started = False
        self._armed = False

    def _on_observer(self, device: int, alloc: int, device_alloc: int, device_free: int) -> None:
        if self.device is not None and device != self.device:
            return
        self.dump("oom observer", extra={"requested_bytes": int(alloc), "device_allocated_bytes": int(device_alloc),
                                         "device_free_bytes": int(device_free)})

    def dump(self, reason: str, exc: BaseException | None = None, extra: Mapping[str, Any] | None = None,
             snapshot: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Write the snapshot pickle and the JSON report; update an existing dump of this step. Never raises."""
        try:
            step = int(self.step_fn())
            message = str(exc) if exc is not None else ""
            if step in self._dumped_steps and self.dumps:
                report = self.dumps[-1]
                if message:
                    report["message"] = message.splitlines()[0][:2000]
                    report["message_numbers"] = parse_oom_message(message)
                    Path(report["report_path"]).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
                return report
            if snapshot is None:
                import torch

                snapshot = torch.cuda.memory._snapshot()
            sets = tensor_sets_of(self.model, self.optimizer) if (self.model is not None or self.optimizer is not None) else {}
            phase = self.phase_fn()
            attribution = attribute_snapshot(snapshot, sets, phase=phase, device=self.device)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            stem = f"oom_rank{self.rank}_step{step}"
            pickle_path = _unique_path(self.run_dir, stem, ".pickle")
            report_path = pickle_path.with_suffix(".json")
            tmp = pickle_path.with_suffix(".pickle.tmp")
            with open(tmp, "wb") as fh:
                pickle.dump(snapshot, fh)
            os.replace(tmp, pickle_path)
            report: dict[str, Any] = {
                "kind": "oom",
                "rank": self.rank,
                "step": step,
                "phase": phase,
                "time": time.time(),
                "reason": reason,
                "message": message.splitlines()[0][:2000] if message else "",
                "message_numbers": parse_oom_message(message) if message else {},
                "observer": dict(extra or {}),
                "snapshot_path": str(pickle_path),
                "report_path": str(report_path),
                "viewer": "https://pytorch.org/memory_viz (drag the .pickle file onto the page)",
                "history_recorded": self.record_history,
                "attribution": attribution,
                "against_prediction": against_prediction(attribution, self.prediction),
            }
            report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            self._dumped_steps.add(step)
            self.dumps.append(report)
            log.warning("vramplan: CUDA out of memory at step %d (%s); snapshot %s, report %s",
                        step, phase or "unknown phase", pickle_path, report_path)
            return report
        except Exception as err:
            log.warning("vramplan: OOM flight recorder failed (%s: %s)", type(err).__name__, err)
            return None
