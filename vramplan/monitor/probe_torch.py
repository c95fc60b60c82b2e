"""The GPU half of ``vramplan probe``: real trials on the local GPU(s).

Owns ``gpu_status`` (is there a CUDA device, and why not), ``local_device_info`` and ``run_probe``:
initialise ``torch.distributed`` when launched by torchrun / the DeepSpeed launcher (``WORLD_SIZE`` >
1, NCCL, one GPU per ``LOCAL_RANK``), build the workload once (``workload.build_workload``), then
for each micro-batch the search asks for: empty the cache, reset the peaks, run ``steps`` real steps,
catch ``torch.cuda.OutOfMemoryError`` (dropping the traceback before freeing memory), read
``max_memory_allocated``/``max_memory_reserved`` and the device use, and agree across ranks (an
all-reduce of the OOM flag and of the peaks, so every rank takes the same branch).

Imports torch at module level.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any, Callable, Mapping

import torch

from ..core.scenario import Scenario
from . import is_oom
from .probe import SearchResult, TrialResult, search_largest


def gpu_status() -> str | None:
    """None when a CUDA GPU is usable, else the reason in a few words."""
    try:
        if not torch.cuda.is_available():
            return f"no CUDA GPU is visible to torch {torch.__version__} (torch.cuda.is_available() is False)"
    except Exception as exc:  # pragma: no cover - broken driver
        return f"CUDA is not usable ({type(exc).__name__}: {exc})"
    return None


def local_device_info(device: torch.device) -> dict[str, Any]:
    """Name, capacity and versions of the local device."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({"gpu_name": props.name, "capacity_bytes": int(props.total_memory),
                     "compute_capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda})
    return info


def _distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size), initialising the process group when launched with WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        torch.cuda.set_device(local)
        torch.distributed.init_process_group("nccl", device_id=torch.device("cuda", local))
    return rank, local, world


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` with its index: a bare "cuda" becomes the current CUDA device (``torch.cuda.set_device``
    refuses a CUDA device without an index)."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


class ProbeSession:
    """A workload on one device and the trial function the search calls."""

    def __init__(self, config: Mapping[str, Any], scenario: Scenario, *, steps: int = 2,
                 device: str | torch.device | None = None, log: Callable[[str], None] = lambda s: None) -> None:
        from .workload import build_workload

        self.rank, self.local_rank, self.world = _distributed() if device is None else (0, 0, 1)
        self.device = resolve_device(device) if device is not None else torch.device("cuda", self.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.steps = steps
        self.log = log
        self.workload = build_workload(config, scenario, self.device, log=log)

    def _agree(self, oom: bool, peaks: list[int]) -> tuple[bool, list[int]]:
        if self.world <= 1 or not torch.distributed.is_initialized():
            return oom, peaks
        t = torch.tensor([int(oom), *peaks], device=self.device, dtype=torch.int64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        values = [int(v) for v in t.tolist()]
        return bool(values[0]), values[1:]

    def trial(self, micro_batch: int) -> TrialResult:
        """``steps`` real steps at ``micro_batch``; OOM -> fits=False (agreed across ranks)."""
        cuda = self.device.type == "cuda"
        if cuda:
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        error = ""
        t0 = time.perf_counter()
        try:
            for _ in range(self.steps):
                self.workload.step(micro_batch)
            if cuda:
                torch.cuda.synchronize(self.device)
        except Exception as exc:  # OutOfMemoryError, or an OOM that a library re-raised as RuntimeError
            if not is_oom(exc):
                raise
            error = "OOM: " + (str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
        elapsed = (time.perf_counter() - t0) / max(1, self.steps)
        oom = bool(error)  # the exception (and its frames holding tensors) is gone here
        self.workload.zero_grad()
        peak_alloc = peak_res = outside = 0
        if cuda:
            peak_alloc = int(torch.cuda.max_memory_allocated(self.device))
            peak_res = int(torch.cuda.max_memory_reserved(self.device))
            free, total = torch.cuda.mem_get_info(self.device)
            outside = max(0, int(total - free) - int(torch.cuda.memory_reserved(self.device)))
        oom, (peak_alloc, peak_res, outside) = self._agree(oom, [peak_alloc, peak_res, outside])
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        self.log(f"micro-batch {micro_batch}: {'OOM' if oom else 'fits'}"
                 + (f", peak reserved {peak_res / 2**30:.2f} GiB" if cuda else ""))
        return TrialResult(micro_batch=micro_batch, fits=not oom,
                           peak_allocated_bytes=peak_alloc if cuda else None,
                           peak_reserved_bytes=peak_res if cuda else None,
                           device_used_bytes=peak_res + outside if cuda else None,
                           step_time_s=round(elapsed, 4), error=error)

    def close(self) -> None:
        """Tear the process group down (if this session made it)."""
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run_probe(config: Mapping[str, Any], scenario: Scenario, *, steps: int = 2, limit: int = 1024,
              start: int = 1, log: Callable[[str], None] = lambda s: None) -> tuple[SearchResult, dict[str, Any], list[str], int]:
    """Search the largest micro-batch on this rank's GPU: (search, device info, notes, rank)."""
    session = ProbeSession(config, scenario, steps=steps, log=log)
    try:
        search = search_largest(session.trial, start=start, limit=limit)
        info = local_device_info(session.device)
        info["world_size"] = session.world
        return search, info, list(session.workload.notes), session.rank
    finally:
        session.close()
