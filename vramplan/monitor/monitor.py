"""``MemoryMonitor``: per-step and per-phase memory of a real training run, held against the estimate.

Use it as a context manager around a plain PyTorch or DeepSpeed loop::

    with MemoryMonitor("runs/exp1", scenario="scenario.yaml") as mon:
        mon.watch(model, optimizer)          # optional: phase boundaries from hooks
        for batch in loader:
            with mon.phase("forward"):  loss = model(**batch).loss
            with mon.phase("backward"): loss.backward()       # engine.backward(loss)
            with mon.phase("optimizer"): opt.step(); opt.zero_grad()
            mon.step()

Per step and phase it records allocated, reserved and their peaks (CUDA allocator; reset at each
boundary), device memory used (NVML) and host RSS into ``memory_rank{R}.jsonl`` (rank from
``RANK``/``LOCAL_RANK``), and writes ``summary_rank{R}.json`` at the end: measured peaks per phase,
the prediction of the scenario and the relative error per metric, the smallest headroom, warnings,
the leak verdict and the monitor's own overhead. On a CUDA OOM inside the ``with`` block the flight
recorder dumps a snapshot and an attribution (``oom.py``) and the error propagates unchanged.

The monitor never raises into the training loop: every method catches its own errors, logs the
first one per method (logger ``vramplan.monitor``) and carries on; after 20 failures it stops
sampling. Only the constructor raises (``VramplanError``) for bad arguments, before training starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from .. import __version__
from ..core.errors import VramplanError
from .compare import compare, prediction_from
from .guard import guard_once, guard_step
from .hooks import first_grad_tensor, is_oom
from .leaks import leak_verdict, new_allocation_sites
from .phase_stats import PhaseAggregate, max_known
from .oom import FlightRecorder
from .sources import MemorySource, Sample, default_source

log = logging.getLogger("vramplan.monitor")

SCHEMA_VERSION = 1


def env_rank() -> tuple[int, int]:
    """(rank, world size) from ``RANK``/``LOCAL_RANK`` and ``WORLD_SIZE`` (0, 1 when unset)."""
    def number(name: str) -> int | None:
        value = os.environ.get(name, "").strip()
        return int(value) if value.isdigit() else None

    rank = number("RANK")
    if rank is None:
        rank = number("LOCAL_RANK") or 0
    return rank, number("WORLD_SIZE") or 1


class MemoryMonitor:
    """See the module docstring."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        scenario: Any = None,
        prediction: Mapping[str, Any] | None = None,
        source: MemorySource | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        headroom_warning: float = 0.05,
        record_history: bool = False,
        history_max_entries: int = 100_000,
        flight_recorder: bool = True,
        reset_peaks: bool = True,
        leak_warmup: int | None = None,
        overwrite: bool = False,
    ) -> None:
        env_r, env_w = env_rank()
        self.rank = env_r if rank is None else int(rank)
        self.world_size = env_w if world_size is None else int(world_size)
        if not 0.0 <= headroom_warning < 1.0:
            raise VramplanError(f"headroom_warning={headroom_warning!r}: must be a fraction in [0, 1); e.g. 0.05")
        self.run_dir = Path(run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise VramplanError(f"run_dir={str(self.run_dir)!r} is a file; give a folder")
        self.log_path = self.run_dir / f"memory_rank{self.rank}.jsonl"
        self.summary_path = self.run_dir / f"summary_rank{self.rank}.json"
        if not overwrite:
            for path in (self.log_path, self.summary_path):
                if path.exists():
                    raise VramplanError(f"{path} already exists; use a new run_dir or pass overwrite=True")
        if prediction is not None:
            self.prediction: dict[str, Any] | None = dict(prediction)
        else:
            self.prediction = prediction_from(scenario) if scenario is not None else None
        self.headroom_warning = headroom_warning
        self.record_history = record_history
        self.reset_peaks = reset_peaks
        self.leak_warmup = leak_warmup
        self._source_arg = source
        self.source: MemorySource | None = source
        self._flight_enabled = flight_recorder
        self.recorder: FlightRecorder | None = None
        self._history_max = history_max_entries
        self._file: Any = None
        self._started = False
        self._closed = False
        self._disabled = False
        self._failures = 0
        self._failed_methods: set[str] = set()
        self._overhead_s = 0.0
        self._setup_s = 0.0
        self._t_start = 0.0
        self._t_step = 0.0
        self.step_index = 0
        self._phase: str | None = None
        self._phase_t0 = 0.0
        self._aggs: dict[str, PhaseAggregate] = {}
        self._gap_peak_alloc: int | None = None
        self._gap_peak_res: int | None = None
        self._step_records: list[dict[str, Any]] = []
        self._phase_peaks: dict[str, dict[str, int | None]] = {}
        self._min_headroom: int | None = None
        self._warnings: list[dict[str, Any]] = []
        self._warned: set[str] = set()
        self._hooks: list[Any] = []
        self._baseline_snapshot: Any = None
        self._oom: dict[str, Any] | None = None
        self.capacity_bytes: int | None = None
        self.summary: dict[str, Any] | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "MemoryMonitor":
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is not None:
            self.on_exception(exc)
        self.close()
        return False

    @guard_once
    def start(self) -> None:
        """Open the log, write its header, arm the flight recorder. Called by ``__enter__``."""
        if self._started:
            return
        self._started = True
        if self.source is None:
            self.source = default_source()
        self.capacity_bytes = self.source.capacity_bytes()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.log_path, "w", encoding="utf-8")
        header = {
            "kind": "header",
            "schema_version": SCHEMA_VERSION,
            "vramplan": __version__,
            "rank": self.rank,
            "world_size": self.world_size,
            "pid": os.getpid(),
            "started_at": time.time(),
            "source": self.source.describe(),
            "peaks_tracked": self.source.tracks_peaks,
            "capacity_bytes": self.capacity_bytes,
            "headroom_warning": self.headroom_warning,
            "prediction": self.prediction,
        }
        self._write(header)
        if self._flight_enabled and self.source.name == "cuda":
            device = getattr(self.source, "device", None)
            self.recorder = FlightRecorder(self.run_dir, self.rank, prediction=self.prediction,
                                           record_history=self.record_history, max_entries=self._history_max,
                                           device=device)
            self.recorder.phase_fn = lambda: self._phase
            self.recorder.step_fn = lambda: self.step_index
            self.recorder.arm()
        if self.reset_peaks:
            self.source.reset_peak()
        self._t_start = self._t_step = time.perf_counter()

    def _write(self, record: Mapping[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    # ------------------------------------------------------------------ phases
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """``with mon.phase("forward"): ...`` marks one phase (errors inside propagate untouched)."""
        self.begin_phase(name)
        try:
            yield
        finally:
            self.end_phase()

    def _absorb_gap(self, sample: Sample) -> None:
        self._gap_peak_alloc = max_known(self._gap_peak_alloc, sample.peak_allocated_bytes)
        self._gap_peak_res = max_known(self._gap_peak_res, sample.peak_reserved_bytes)

    @guard_step
    def begin_phase(self, name: str) -> None:
        """Close the open phase (if any) and start ``name`` (forward, backward, optimizer or your own)."""
        if not self._started or self._closed or name == self._phase:
            return  # already in it (e.g. on_step_begin, then the model's forward pre-hook)
        if self._phase is not None:
            self._end_phase()
        elif self.source is not None and self.source.tracks_peaks:
            self._absorb_gap(self.source.read(rss=False))
        self._phase = name
        self._phase_t0 = time.perf_counter()
        if self.reset_peaks and self.source is not None:
            self.source.reset_peak()

    @guard_step
    def end_phase(self) -> None:
        """Close the open phase."""
        if self._phase is not None:
            self._end_phase()

    def _end_phase(self) -> None:
        assert self.source is not None and self._phase is not None
        sample = self.source.read(rss=False)
        self._aggs.setdefault(self._phase, PhaseAggregate()).add(sample, time.perf_counter() - self._phase_t0)
        self._phase = None
        if self.reset_peaks:
            self.source.reset_peak()

    # ------------------------------------------------------------------ steps
    @guard_step
    def step(self) -> None:
        """End of one optimizer step: write its records, check headroom, start the next step."""
        if not self._started or self._closed:
            return
        self._finish_step()

    def _finish_step(self) -> None:
        assert self.source is not None
        if self._phase is not None:
            self._end_phase()
        sample = self.source.read()
        now = time.perf_counter()
        step = self.step_index
        peak_alloc = max_known(self._gap_peak_alloc, sample.peak_allocated_bytes)
        peak_res = max_known(self._gap_peak_res, sample.peak_reserved_bytes)
        device_used = sample.device_used_bytes
        host_rss = sample.host_rss_bytes
        for name, agg in self._aggs.items():
            peak_alloc = max_known(peak_alloc, agg.peak_allocated)
            peak_res = max_known(peak_res, agg.peak_reserved)
            device_used = max_known(device_used, agg.device_used)
            host_rss = max_known(host_rss, agg.host_rss)
            rec = {"kind": "phase", "rank": self.rank, "step": step, "phase": name, "micro_steps": agg.count,
                   "duration_s": round(agg.duration_s, 6), "allocated_bytes": agg.allocated,
                   "reserved_bytes": agg.reserved, "peak_allocated_bytes": agg.peak_allocated,
                   "peak_reserved_bytes": agg.peak_reserved, "device_used_bytes": agg.device_used,
                   "host_rss_bytes": agg.host_rss}
            self._write(rec)
            peaks = self._phase_peaks.setdefault(name, {})
            for key, value in (("peak_allocated_bytes", agg.peak_allocated), ("peak_reserved_bytes", agg.peak_reserved),
                               ("device_used_bytes", agg.device_used), ("host_rss_bytes", agg.host_rss)):
                peaks[key] = max_known(peaks.get(key), value)
        headroom = None
        if self.capacity_bytes:
            in_use = max_known(peak_res, device_used)
            if in_use is not None:
                headroom = self.capacity_bytes - in_use
                self._min_headroom = headroom if self._min_headroom is None else min(self._min_headroom, headroom)
        rec = {"kind": "step", "rank": self.rank, "step": step, "time_s": round(now - self._t_start, 6),
               "step_time_s": round(now - self._t_step, 6), "allocated_bytes": sample.allocated_bytes,
               "reserved_bytes": sample.reserved_bytes, "peak_allocated_bytes": peak_alloc,
               "peak_reserved_bytes": peak_res, "device_used_bytes": device_used, "host_rss_bytes": host_rss,
               "headroom_bytes": headroom}
        self._write(rec)
        if self._file is not None:
            self._file.flush()
        self._step_records.append({"step": step, "allocated_bytes": sample.allocated_bytes,
                                   "peak_reserved_bytes": peak_res, "step_time_s": rec["step_time_s"]})
        self._check(step, headroom, peak_alloc, peak_res, device_used)
        self._aggs = {}
        self._gap_peak_alloc = self._gap_peak_res = None
        self.step_index += 1
        if (self.record_history and self._baseline_snapshot is None and self.recorder is not None
                and self.step_index == self._leak_warmup_steps()):
            import torch

            self._baseline_snapshot = torch.cuda.memory._snapshot()
        if self.reset_peaks:
            self.source.reset_peak()
        self._t_step = time.perf_counter()

    def _leak_warmup_steps(self) -> int:
        return self.leak_warmup if self.leak_warmup is not None else 3

    def _warn(self, key: str, step: int, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        self._warnings.append({"step": step, "kind": key, "message": message})
        self._write({"kind": "event", "rank": self.rank, "step": step, "event": key, "message": message})
        log.warning("vramplan monitor (rank %d, step %d): %s", self.rank, step, message)

    def _check(self, step: int, headroom: int | None, peak_alloc: int | None, peak_res: int | None,
               device_used: int | None) -> None:
        cap = self.capacity_bytes
        if headroom is not None and cap and headroom < self.headroom_warning * cap:
            self._warn("low_headroom", step, f"only {headroom / 2**30:.2f} GiB of {cap / 2**30:.2f} GiB left "
                       f"(< {self.headroom_warning:.0%}); a longer batch may OOM")
        pred = self.prediction
        if pred and self.source is not None and self.source.name == "cuda":
            for name, measured, key in (("reserved", peak_res, "peak_reserved_bytes"),
                                        ("device_used", device_used, "device_used_bytes")):
                predicted = pred.get(key)
                if measured and predicted and measured > 1.10 * predicted:
                    self._warn(f"above_prediction_{name}", step,
                               f"measured {name} {measured / 2**30:.2f} GiB is {measured / predicted - 1:.0%} above "
                               f"the vramplan estimate ({predicted / 2**30:.2f} GiB)")

    # ------------------------------------------------------------------ hooks
    @guard_step
    def watch(self, model: Any = None, optimizer: Any = None) -> None:
        """Phase boundaries from hooks: forward pre-hook, a grad hook on the output (backward), optimizer step hooks."""
        if self.recorder is not None:
            self.recorder.model = model if model is not None else self.recorder.model
            self.recorder.optimizer = optimizer if optimizer is not None else self.recorder.optimizer
        if model is not None and hasattr(model, "register_forward_pre_hook"):
            self._hooks.append(model.register_forward_pre_hook(self._on_forward_pre))
            self._hooks.append(model.register_forward_hook(self._on_forward_post))
        opt = optimizer
        if opt is not None and not hasattr(opt, "register_step_pre_hook"):
            opt = getattr(opt, "optimizer", None)
        if opt is not None and hasattr(opt, "register_step_pre_hook"):
            self._hooks.append(opt.register_step_pre_hook(lambda *a, **k: self.begin_phase("optimizer")))
            self._hooks.append(opt.register_step_post_hook(lambda *a, **k: self.end_phase()))

    def _on_forward_pre(self, module: Any, args: Any) -> None:
        if getattr(module, "training", True):
            self.begin_phase("forward")

    def _on_forward_post(self, module: Any, args: Any, output: Any) -> None:
        try:
            if not getattr(module, "training", True):
                return
            tensor = first_grad_tensor(output)
            if tensor is not None:
                tensor.register_hook(self._on_backward_start)
        except Exception:
            pass

    def _on_backward_start(self, grad: Any) -> None:
        if self._phase != "backward":
            self.begin_phase("backward")

    @guard_step
    def unwatch(self) -> None:
        """Remove the hooks ``watch`` added."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    # ------------------------------------------------------------------ OOM and close
    @guard_once
    def on_exception(self, exc: BaseException) -> None:
        """Record an exception from the training loop; a CUDA OOM triggers the flight recorder."""
        if not is_oom(exc):
            self._write({"kind": "event", "rank": self.rank, "step": self.step_index, "event": "exception",
                         "message": f"{type(exc).__name__}: {str(exc)[:500]}"})
            return
        report = self.recorder.dump("exception", exc=exc) if self.recorder is not None else None
        self._oom = {"step": self.step_index, "phase": self._phase, "message": str(exc).splitlines()[0][:500] if str(exc) else "",
                     "snapshot_path": report.get("snapshot_path") if report else None,
                     "report_path": report.get("report_path") if report else None}
        self._write({"kind": "event", "rank": self.rank, "step": self.step_index, "event": "oom", **self._oom})

    @guard_once
    def close(self) -> dict[str, Any] | None:
        """Flush the last step, write the summary JSON, remove hooks. Returns the summary."""
        if self._closed or not self._started:
            return self.summary
        self._closed = True
        if self._aggs or self._phase is not None:
            self._finish_step()
        for handle in self._hooks:
            with contextlib.suppress(Exception):
                handle.remove()
        self._hooks = []
        self.summary = self._summary()
        if self._file is not None:
            self._write({"kind": "end", "rank": self.rank, "steps": self.step_index})
            self._file.close()
            self._file = None
        tmp = self.summary_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.summary, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.summary_path)
        if self.recorder is not None:
            self.recorder.disarm()
        return self.summary

    def _summary(self) -> dict[str, Any]:
        verdict = leak_verdict(self._step_records, warmup=self.leak_warmup)
        leak = verdict.as_dict()
        if verdict.leak and self.record_history and self.recorder is not None:
            import torch

            leak["sites"] = new_allocation_sites(self._baseline_snapshot, torch.cuda.memory._snapshot(),
                                                 device=getattr(self.source, "device", None))
        wall = time.perf_counter() - self._t_start
        step_peaks = [r["peak_reserved_bytes"] for r in self._step_records if r["peak_reserved_bytes"] is not None]
        measured = {
            "peak_allocated_bytes": max((p.get("peak_allocated_bytes") or 0 for p in self._phase_peaks.values()), default=None),
            "peak_reserved_bytes": max(step_peaks) if step_peaks else None,
            "device_used_bytes": max((p.get("device_used_bytes") or 0 for p in self._phase_peaks.values()), default=None),
            "phases": {k: v for k, v in self._phase_peaks.items()},
        }
        return {
            "kind": "summary",
            "schema_version": SCHEMA_VERSION,
            "vramplan": __version__,
            "rank": self.rank,
            "world_size": self.world_size,
            "source": self.source.describe() if self.source is not None else None,
            "capacity_bytes": self.capacity_bytes,
            "steps": self.step_index,
            "measured": measured,
            "prediction": self.prediction,
            "comparison": compare(self._phase_peaks, self.prediction) if self.source is not None
            and self.source.name in ("cuda", "fake", "callable") else {},
            "min_headroom_bytes": self._min_headroom,
            "warnings": self._warnings,
            "leak": leak,
            "oom": self._oom,
            "overhead": {
                "monitor_s": round(self._overhead_s, 6),
                "setup_s": round(self._setup_s, 6),
                "wall_s": round(wall, 6),
                "fraction": round(self._overhead_s / wall, 6) if wall > 0 else None,
                "per_step_us": round(1e6 * self._overhead_s / max(1, self.step_index), 2),
            },
            "internal_errors": self._failures,
        }
