"""Lightning integration: ``VramplanLightningCallback`` drives a ``MemoryMonitor``.

::

    from vramplan.monitor.lightning import VramplanLightningCallback
    trainer = L.Trainer(callbacks=[VramplanLightningCallback("runs/exp1", scenario="scenario.yaml")])

Hook mapping (Lightning 2.x ``Callback`` API): ``on_fit_start`` starts the monitor (rank
``trainer.global_rank``); ``on_train_batch_start`` opens the forward phase (``training_step``);
``on_before_backward`` opens backward; ``on_before_optimizer_step`` opens the optimizer phase;
``on_train_batch_end`` closes the step when ``trainer.global_step`` advanced (so gradient
accumulation aggregates micro-batches into one step); ``on_exception`` hands a CUDA OOM to the flight
recorder (the hook Lightning #16901 asks for); ``on_fit_end``/``teardown`` write the summary.

The logic lives in ``LightningMemoryLogic`` (no Lightning import, tested with a stub trainer). The
callback class itself is created on first access and subclasses ``lightning.pytorch.Callback``
(or ``pytorch_lightning.Callback``); without either, accessing it raises a ``VramplanError`` naming
the install command.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..core.errors import VramplanError
from .monitor import MemoryMonitor

log = logging.getLogger("vramplan.monitor")


class LightningMemoryLogic:
    """Lightning hook methods over a ``MemoryMonitor``; mixed into the real ``Callback`` class."""

    def __init__(self, run_dir: str | os.PathLike[str] = "vramplan_run", *, scenario: Any = None,
                 **monitor_kwargs: Any) -> None:
        self.run_dir = run_dir
        self.monitor_kwargs = monitor_kwargs
        self.monitor: MemoryMonitor | None = None
        self._prediction = None
        self._last_global_step: int | None = None
        if scenario is not None:  # validated before fit
            from .compare import prediction_from

            self._prediction = prediction_from(scenario)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Create and start the monitor for this rank."""
        if self.monitor is not None:
            return
        kwargs = dict(self.monitor_kwargs)
        kwargs.setdefault("rank", int(getattr(trainer, "global_rank", 0) or 0))
        kwargs.setdefault("world_size", int(getattr(trainer, "world_size", 1) or 1))
        try:
            self.monitor = MemoryMonitor(self.run_dir, prediction=self._prediction, **kwargs)
        except VramplanError as exc:
            log.warning("vramplan: memory monitoring is off for this run: %s", exc)
            return
        self.monitor.start()
        self._last_global_step = int(getattr(trainer, "global_step", 0) or 0)
        if self.monitor.recorder is not None:
            self.monitor.recorder.model = pl_module
            optimizers = getattr(trainer, "optimizers", None) or []
            self.monitor.recorder.optimizer = optimizers[0] if optimizers else None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Forward (``training_step``) begins."""
        if self.monitor is not None:
            self.monitor.begin_phase("forward")

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        """Backward begins."""
        if self.monitor is not None:
            self.monitor.begin_phase("backward")

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        """Optimizer step begins (after clipping)."""
        if self.monitor is not None:
            self.monitor.begin_phase("optimizer")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Close the step when the optimizer stepped; else only close the open phase."""
        if self.monitor is None:
            return
        step = int(getattr(trainer, "global_step", 0) or 0)
        if self._last_global_step is None or step != self._last_global_step:
            self._last_global_step = step
            self.monitor.step()
        else:
            self.monitor.end_phase()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """A CUDA OOM goes to the flight recorder; then the summary is written."""
        if self.monitor is not None:
            self.monitor.on_exception(exception)
            self.monitor.close()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        """Write the summary."""
        if self.monitor is not None:
            self.monitor.close()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Write the summary if ``on_fit_end`` did not run."""
        if self.monitor is not None:
            self.monitor.close()


def _callback_base() -> type:
    try:
        from lightning.pytorch import Callback
    except ImportError:
        try:
            from pytorch_lightning import Callback
        except ImportError:
            raise VramplanError('the Lightning callback needs Lightning; run: pip install "vramplan[lightning]" '
                                "(or pip install lightning)") from None
    return Callback  # type: ignore[no-any-return]


_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    global _CLASS
    if name == "VramplanLightningCallback":
        if _CLASS is None:
            _CLASS = type("VramplanLightningCallback", (LightningMemoryLogic, _callback_base()),
                          {"__doc__": "Lightning ``Callback`` recording memory per step and phase (module docstring).",
                           "__module__": __name__})
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
