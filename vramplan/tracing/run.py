"""Trace two training steps of a scenario on fake tensors and report them as an ``Estimate`` with the same keys.

Owns ``trace_scenario`` (build, engine set-up, two steps, per-phase peaks of the second step) and
``trace_estimate`` (the traced breakdowns completed with what tracing cannot see, as a core ``Estimate``
that every renderer already knows).

The step is HF Trainer's: ``loss = model(**batch).loss`` (outputs dropped), ``loss.backward()`` per
micro-batch (``min(grad_accum, 2)`` micro-batches: the second one runs with the first one's gradients
alive), then ``optimizer.step(); optimizer.zero_grad(set_to_none=True)``. The first step creates the
optimizer states lazily; the second is the steady state that is reported (as the analytical model does).
Mixed precision outside DeepSpeed runs the forward under autocast with CUDA's fp32 op list
(``patches.cuda_autocast_policy``).

Allocated bytes come from the trace. ``reserved`` and ``device_used`` add the analytical overheads the trace
cannot see (``core/memory/overhead.py``): the cuBLAS/cuBLASLt workspaces (allocated by the CUDA run, not
by any aten op), the caching allocator's reserved-but-free share, the CUDA context and NCCL buffers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.breakdown import Breakdown
from ..core.errors import VramplanError
from ..core.estimate import PHASES, Estimate, PhaseEstimate, estimate_scenario
from ..core.memory.overhead import (
    CUDA_CONTEXT_BYTES,
    allocator_slack_bytes,
    cublas_bytes,
    nccl_bytes,
)
from ..core.scenario import Engine, Scenario
from ._deps import require_torch

TRACE_NOTE = ("traced on fake tensors (transformers {tv}, torch {torchv}, CPU kernels with CUDA's 512 B allocator "
              "rounding); not seen by the trace and added from the analytical model: cuBLAS workspaces, allocator "
              "slack (reserved - allocated), CUDA context, NCCL buffers")


@dataclass
class TraceResult:
    """Per-phase peaks of the traced steady-state step (bytes per breakdown key, allocated keys only)."""

    scenario: Scenario
    phases: dict[str, dict[str, int]]
    """phase -> breakdown items at the phase's peak (second step)."""
    first_step: dict[str, int]
    """phase -> peak total of the first step (optimizer states are created there)."""
    params_total: int
    params_trainable: int
    wall_seconds: float
    notes: list[str] = field(default_factory=list)
    largest: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)
    """Named snapshots (``pre_logits``: decoder activations alive when lm_head starts)."""
    backward_layer_peak: int = 0
    """Largest recompute + backward temporaries of the layers' backward (the loss backward excluded)."""

    def total(self, phase: str) -> int:
        """Traced allocated bytes at ``phase``'s peak."""
        return sum(self.phases[phase].values())


@contextlib.contextmanager
def _autocast(enabled: bool, dtype: Any) -> Iterator[None]:
    import torch

    from .patches import cuda_autocast_policy

    if not enabled:
        yield
        return
    with cuda_autocast_policy(), torch.autocast("cpu", dtype=dtype):
        yield


class TraceFailed(VramplanError):
    """transformers or torch raised while tracing (an op or a model path the fake tensors cannot run)."""


def trace_scenario(scn: Scenario, config: dict[str, Any], *, debug: bool = False,
                   resolve_tower: Any = None) -> TraceResult:
    """Two traced training steps of ``scn`` whose model is the HF ``config`` dict (module docstring).
    Failures inside torch/transformers become one-line ``TraceFailed`` errors."""
    require_torch()
    try:
        return _trace(scn, config, debug=debug, resolve_tower=resolve_tower)
    except VramplanError:
        raise
    except Exception as exc:  # an op or a model path that fake tensors cannot run
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise TraceFailed(f"tracing {scn.model.name} failed: {type(exc).__name__}: {first}; "
                          "use --estimator analytic (or report the model)") from exc


def _trace(scn: Scenario, config: dict[str, Any], *, debug: bool, resolve_tower: Any) -> TraceResult:
    """``trace_scenario`` without the error wrapping."""
    torch, _transformers = require_torch()
    from torch._subclasses.fake_tensor import FakeTensorMode

    from .build import build
    from .engines import make_engine
    from .patches import cuda_dropout, quiet, unequal_head_dims
    from .tracker import StorageTracker

    start = time.perf_counter()
    accum = min(scn.train.grad_accum, 2)
    fsdp_ctx: Any = contextlib.nullcontext()
    sharded_fsdp = scn.parallel.engine in (Engine.FSDP, Engine.FSDP2) and scn.parallel.fsdp_sharding.value != "no-shard"
    if sharded_fsdp:
        from .fsdp import fake_process_group

        fsdp_ctx = fake_process_group(scn)
    with quiet(), cuda_dropout(), unequal_head_dims(), fsdp_ctx as mesh, FakeTensorMode() as fake_mode:
        built = build(scn, config, fake_mode, resolve_tower)
        params_total = sum(p.numel() for p in built.model.parameters())
        params_trainable = sum(p.numel() for p in built.trainable)
        tracker = StorageTracker(debug=debug)
        if sharded_fsdp:
            from .fsdp import FSDP2Engine

            engine: Any = FSDP2Engine(scn, built, mesh)
            engine.shard(tracker)
        else:
            engine = make_engine(scn, built)
        tracker.track_existing([p for p in built.model.parameters()], "model_states/params")
        tracker.track_existing([b for b in built.model.buffers()], "model_states/params")
        for t in built.inputs.values():  # the batch stays on the GPU for the whole step (HF Trainer)
            if isinstance(t, torch.Tensor):
                tracker.retag(t, "activations/vision" if t.is_floating_point() else "activations/llm")
        for module, part in built.parts:
            tracker.attach_part(module, part)
        tracker.attach_logits(built.lm_head)
        tracker.attach_recompute(built.ckpt_layers)
        try:
            with tracker:
                engine.setup(tracker)
                for it in range(2):
                    for _micro in range(accum):
                        tracker.set_phase("forward", it)
                        with _autocast(built.policy.autocast, built.policy.compute):
                            loss = built.forward()
                        tracker.set_phase("backward", it)
                        engine.before_backward(tracker)
                        loss.backward()
                        del loss
                    tracker.set_phase("optimizer", it)
                    engine.step(tracker)
                    tracker.set_phase("idle", it)
        finally:
            tracker.close()
            if hasattr(engine, "close"):
                engine.close()
        phases = {ph: engine.adjust(ph, tracker.peak(ph, 1).items) for ph in PHASES}
        first = {ph: tracker.peak(ph, 0).total for ph in PHASES}
        largest = {ph: tracker.peak(ph, 1).largest for ph in PHASES} if debug else {}
    import transformers

    notes = [TRACE_NOTE.format(tv=transformers.__version__, torchv=torch.__version__)] + built.notes
    notes += getattr(engine, "notes", [])
    return TraceResult(scenario=scn, phases=phases, first_step=first, params_total=params_total,
                       params_trainable=params_trainable, wall_seconds=time.perf_counter() - start, notes=notes,
                       largest=largest, marks=dict(tracker.marks), backward_layer_peak=tracker.layer_backward_peak)


def overheads(scn: Scenario, items: dict[str, int]) -> dict[str, int]:
    """What the trace cannot see, from the analytical model (module docstring)."""
    out = dict(items)
    out["overhead/cublas"] = cublas_bytes(scn.cluster.gpu)
    out["overhead/allocator"] = allocator_slack_bytes(scn, out)
    out["overhead/cuda_context"] = CUDA_CONTEXT_BYTES
    out["overhead/nccl"] = nccl_bytes(scn)
    return out


def to_estimate(result: TraceResult) -> Estimate:
    """The traced phases as a core ``Estimate`` (host RAM, capacity and parameter summary from the analytical one)."""
    scn = result.scenario
    analytic = estimate_scenario(scn)
    phases = tuple(PhaseEstimate(ph, Breakdown(overheads(scn, result.phases[ph]))) for ph in PHASES)
    peak_phase = max(phases, key=lambda p: p.device_used_bytes).phase
    return Estimate(scenario=scn, phases=phases, peak_phase=peak_phase, capacity_bytes=analytic.capacity_bytes,
                    headroom_bytes=analytic.headroom_bytes, host=analytic.host, host_ram_bytes=analytic.host_ram_bytes,
                    params=analytic.params, notes=tuple(result.notes) + analytic.notes)


def trace_estimate(scn: Scenario, config: dict[str, Any], *, debug: bool = False, resolve_tower: Any = None) -> Estimate:
    """``trace_scenario`` rendered as an ``Estimate``."""
    return to_estimate(trace_scenario(scn, config, debug=debug, resolve_tower=resolve_tower))
