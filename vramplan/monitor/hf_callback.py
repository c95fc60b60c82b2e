"""Hugging Face ``Trainer`` integration: ``VramplanCallback`` drives a ``MemoryMonitor``.

::

    from vramplan.monitor.hf_callback import VramplanCallback
    trainer = Trainer(..., callbacks=[VramplanCallback(scenario="scenario.yaml")])

Event mapping (transformers >= 4.46): ``on_train_begin`` starts the monitor (run folder
``<output_dir>/vramplan`` unless given; rank ``args.process_index``) and hooks the model
(forward pre-hook, and a grad hook on the loss for the start of backward); ``on_step_begin`` opens
the forward phase of a step; ``on_pre_optimizer_step``/``on_optimizer_step`` bracket the optimizer
phase (clipping stays in backward); ``on_step_end`` closes the step (after ``model.zero_grad()``);
``on_train_end`` writes the summary. Trainer gives callbacks no exceptions, so an OOM is caught by
the flight recorder's allocator observer (CUDA only) or by wrapping ``trainer.train()`` in
``with callback.monitor: ...``.

Importing this module imports transformers; ``vramplan.monitor`` does not import it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..core.errors import VramplanError

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - exercised only without transformers
    raise VramplanError('the Hugging Face callback needs transformers; run: pip install "vramplan[torch]"') from exc

from .monitor import MemoryMonitor

log = logging.getLogger("vramplan.monitor")


class VramplanCallback(TrainerCallback):  # type: ignore[misc]
    """A ``TrainerCallback`` that records memory per step and phase (module docstring)."""

    def __init__(self, run_dir: str | os.PathLike[str] | None = None, *, scenario: Any = None,
                 **monitor_kwargs: Any) -> None:
        self.run_dir = run_dir
        self.scenario = scenario
        self.monitor_kwargs = monitor_kwargs
        self.monitor: MemoryMonitor | None = None
        self._prediction = None
        self._gave_up = False
        if scenario is not None:  # validated here, before training starts
            from .compare import prediction_from

            self._prediction = prediction_from(scenario)

    def _ensure_monitor(self, args: Any) -> MemoryMonitor | None:
        if self.monitor is None and not self._gave_up:
            run_dir = self.run_dir or os.path.join(getattr(args, "output_dir", None) or ".", "vramplan")
            kwargs = dict(self.monitor_kwargs)
            kwargs.setdefault("rank", int(getattr(args, "process_index", 0) or 0))
            kwargs.setdefault("world_size", int(getattr(args, "world_size", 1) or 1))
            try:
                self.monitor = MemoryMonitor(run_dir, prediction=self._prediction, **kwargs)
            except VramplanError as exc:  # e.g. the run folder already holds a log: train anyway
                self._gave_up = True
                log.warning("vramplan: memory monitoring is off for this run: %s", exc)
        return self.monitor

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        mon = self._ensure_monitor(args)
        if mon is None:
            return
        mon.start()
        mon.watch(model, optimizer=None)
        if mon.recorder is not None:
            mon.recorder.optimizer = optimizer

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.begin_phase("forward")

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.begin_phase("optimizer")

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.end_phase()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.close()
