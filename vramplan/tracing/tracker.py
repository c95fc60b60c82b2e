"""A lean memory tracker: every storage a fake training step allocates, filed under the shared breakdown keys.

Owns ``StorageTracker``, a ``TorchDispatchMode`` that sees the output of every aten op, registers each new
storage once (rounded up to the CUDA caching allocator's 512-byte blocks), forgets it when its Python
storage object dies (weakref callback: the storage is freed), and keeps the running total per breakdown key
and the peak of each phase with the breakdown at that moment. It replaces ``torch.distributed._tools.
MemTracker``, which walks every module and deep-copies snapshots on every op (about 14x slower on Llama-3-8B,
tracing-on-cpu.md §3).

Which key a new storage gets depends only on where the step is (``phase``) and, in the forward, which part
of the model runs (module hooks set by ``attach_*``):

- setup: parameters and module buffers -> ``model_states/params``; inputs -> ``activations/llm``;
- forward: ``activations/{llm,vision,projector,logits_loss}`` by the running part (lm_head and the loss are
  ``logits_loss``);
- backward: ``activations/logits_loss`` until the gradient of the lm_head input exists (the cross-entropy
  and logits backward, the analytical model's ``logits_backward``), then ``temporaries/recompute`` while a
  checkpointed layer re-runs its forward, else ``temporaries/backward``;
- optimizer: ``temporaries/optimizer_step``.

Re-filing: a parameter's ``.grad`` becomes ``model_states/grads`` (post-accumulate-grad hook), optimizer
state tensors ``model_states/optimizer`` (``retag``). Imports torch; nothing from vramplan but ``core.breakdown``.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..core.breakdown import KEYS, NOT_ALLOCATED

ALLOCATOR_BLOCK_BYTES = 512
"""``kMinBlockSize`` of c10/cuda/CUDACachingAllocator.cpp: every allocation is rounded up to 512 B."""

TRACE_KEYS: tuple[str, ...] = tuple(k for k in KEYS if k not in NOT_ALLOCATED)
"""Keys the tracer can fill (everything the allocator hands out)."""

PART_KEYS = {
    "llm": "activations/llm",
    "vision": "activations/vision",
    "projector": "activations/projector",
    "logits_loss": "activations/logits_loss",
}


def _local(t: torch.Tensor) -> torch.Tensor:
    """The plain tensor holding the storage (a DTensor's local shard)."""
    return getattr(t, "_local_tensor", t)


def round_block(nbytes: int) -> int:
    """Bytes the CUDA caching allocator hands out for a request of ``nbytes`` (0 stays 0)."""
    return -(-nbytes // ALLOCATOR_BLOCK_BYTES) * ALLOCATOR_BLOCK_BYTES


@dataclass(slots=True)
class Peak:
    """The highest total of one phase and the bytes per key at that moment."""

    total: int = -1
    items: dict[str, int] = field(default_factory=dict)
    largest: list[tuple[int, str, str]] = field(default_factory=list)
    """(bytes, key, description) of the largest live storages at the peak (``debug`` only)."""


class StorageTracker(TorchDispatchMode):
    """Counts live storages per breakdown key; keeps per-phase peaks (see module docstring)."""

    def __init__(self, *, debug: bool = False) -> None:
        super().__init__()
        self._live: dict[int, list[Any]] = {}
        self.now: dict[str, int] = dict.fromkeys(TRACE_KEYS, 0)
        self.total = 0
        self.peaks: dict[tuple[int, str], Peak] = {}
        self.iteration = 0
        self.phase = "setup"
        self.setup_key = "model_states/params"
        self.part_stack: list[str] = []
        self.recompute_depth = 0
        self.logits_backward = False
        self.overrides: list[str] = []
        self.head_grad_shape: tuple[int, ...] | None = None
        self.marks: dict[str, int] = {}
        self.layer_backward_peak = 0
        """Largest recompute + backward temporaries while a checkpointed layer runs backward (calibrate)."""
        self.layer_window = False
        self.debug = debug
        self.closed = False
        self._key = self.setup_key
        self._peak = self._peak_for(self.iteration, self.phase)
        self._handles: list[Any] = []
        self._orig_resize: Callable[..., Any] | None = None

    # ---- context ---------------------------------------------------------------------------------
    def _refresh(self) -> None:
        phase = self.phase
        if self.overrides:
            key = self.overrides[-1]
        elif phase == "forward":
            key = PART_KEYS[self.part_stack[-1] if self.part_stack else "llm"]
        elif phase == "backward":
            if self.logits_backward:
                key = "activations/logits_loss"
            elif self.recompute_depth:
                key = "temporaries/recompute"
            else:
                key = "temporaries/backward"
        elif phase == "optimizer":
            key = "temporaries/optimizer_step"
        else:
            key = self.setup_key
        self._key = key

    def _peak_for(self, iteration: int, phase: str) -> Peak:
        return self.peaks.setdefault((iteration, phase), Peak())

    def set_phase(self, phase: str, iteration: int | None = None) -> None:
        """Enter ``phase`` (setup, forward, backward, optimizer) of ``iteration``."""
        if iteration is not None:
            self.iteration = iteration
        self.phase = phase
        self.logits_backward = phase == "backward"
        self.part_stack.clear()
        self._refresh()
        self._peak = self._peak_for(self.iteration, phase)
        if self.total > self._peak.total:
            self._snapshot()

    def push_part(self, part: str) -> int:
        """A model part starts its forward; returns the stack depth to restore when it ends."""
        depth = len(self.part_stack)
        self.part_stack.append(part)
        self._refresh()
        return depth

    def pop_part(self, depth: int) -> None:
        """The part pushed at ``depth`` finished its forward (parts pushed inside it end with it)."""
        del self.part_stack[depth:]
        self._refresh()

    @contextlib.contextmanager
    def override(self, key: str) -> Iterator[None]:
        """File everything allocated (or resized) inside the block under ``key`` (FSDP's gather buffers)."""
        self.overrides.append(key)
        self._refresh()
        try:
            yield
        finally:
            self.overrides.pop()
            self._refresh()

    def end_logits_backward(self) -> None:
        """The gradient of the lm_head input exists: the loss/logits backward is over."""
        if self.logits_backward:
            self.logits_backward = False
            self._refresh()

    # ---- counting --------------------------------------------------------------------------------
    def _snapshot(self) -> None:
        peak = self._peak
        peak.total = self.total
        peak.items = dict(self.now)
        if self.debug:
            live = sorted(self._live.values(), key=lambda e: -e[0])[:400]
            peak.largest = [(e[0], e[1], e[3]) for e in live]

    def _free(self, cdata: int) -> None:
        entry = self._live.pop(cdata, None)
        if entry is not None:
            self.now[entry[1]] -= entry[0]
            self.total -= entry[0]

    def _add(self, st: Any, key: str, info: str = "") -> None:
        cdata = st._cdata
        size = round_block(st.nbytes())
        ref = weakref.ref(st, lambda _r, cd=cdata, tr=self: tr._free(cd))
        self._live[cdata] = [size, key, ref, info]
        self.now[key] += size
        self.total += size
        if self.total > self._peak.total:
            self._snapshot()
        if self.layer_window:
            layer = self.now["temporaries/recompute"] + self.now["temporaries/backward"]
            self.layer_backward_peak = max(self.layer_backward_peak, layer)

    def _track(self, t: torch.Tensor, info: str) -> None:
        st = _local(t).untyped_storage()
        if st._cdata not in self._live:
            key = self._key
            if self.logits_backward and self.head_grad_shape is not None and tuple(t.shape) == self.head_grad_shape:
                key = "model_states/grads"  # lm_head's weight gradient (pending until accumulated when tied)
            self._add(st, key, info)

    def retag(self, t: torch.Tensor | None, key: str) -> None:
        """File the storage of ``t`` under ``key`` from now on (registering it if unseen)."""
        if t is None:
            return
        st = _local(t).untyped_storage()
        entry = self._live.get(st._cdata)
        if entry is None:
            self._add(st, key, f"{tuple(t.shape)} {t.dtype} (retag)")
        elif entry[1] != key:
            self.now[entry[1]] -= entry[0]
            self.now[key] += entry[0]
            entry[1] = key

    def forget(self, t: torch.Tensor | None) -> None:
        """Stop counting the storage of ``t`` (a tensor the CUDA run keeps on the host, e.g. AdamW's step)."""
        if t is None:
            return
        st = _local(t).untyped_storage()
        entry = self._live.get(st._cdata)
        if entry is None:
            self._add(st, self._key, "host")
            entry = self._live[st._cdata]
        self.now[entry[1]] -= entry[0]
        self.total -= entry[0]
        entry[0] = 0

    def _resized(self, st: Any) -> None:
        entry = self._live.get(st._cdata)
        if entry is None:
            self._add(st, self._key, "resized storage")
            return
        size = round_block(st.nbytes())
        if self.overrides and entry[1] != self.overrides[-1]:
            self.now[entry[1]] -= entry[0]
            entry[1] = self.overrides[-1]
            self.now[entry[1]] += entry[0]
        self.now[entry[1]] += size - entry[0]
        self.total += size - entry[0]
        entry[0] = size
        if self.total > self._peak.total:
            self._snapshot()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        info = str(func) if self.debug else ""
        if isinstance(out, torch.Tensor):
            self._track(out, info and f"{info} {tuple(out.shape)} {out.dtype}")
        elif isinstance(out, (tuple, list)):
            for o in out:
                if isinstance(o, torch.Tensor):
                    self._track(o, info and f"{info} {tuple(o.shape)} {o.dtype}")
                elif isinstance(o, (tuple, list)):
                    for p in o:
                        if isinstance(p, torch.Tensor):
                            self._track(p, info)
        return out

    def __enter__(self) -> StorageTracker:  # noqa: PYI034 (Self needs typing_extensions on 3.10)
        tracker = self
        orig = torch.UntypedStorage.resize_
        self._orig_resize = orig

        def resize_(st: Any, size: int) -> Any:  # FSDP2 frees/refills unsharded params by resizing storages
            result = orig(st, size)
            if not tracker.closed:
                tracker._resized(st)
            return result

        torch.UntypedStorage.resize_ = resize_  # type: ignore[method-assign]
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self._orig_resize is not None:
            torch.UntypedStorage.resize_ = self._orig_resize  # type: ignore[method-assign]
            self._orig_resize = None

    def close(self) -> None:
        """Stop counting (storages freed later are ignored) and remove every hook."""
        self.closed = True
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # ---- hooks -----------------------------------------------------------------------------------
    def track_existing(self, tensors: Iterable[torch.Tensor], key: str) -> None:
        """Register tensors created before tracking started (parameters, buffers, inputs) under ``key``."""
        for t in tensors:
            self.retag(t, key)

    def attach_part(self, module: torch.nn.Module, part: str) -> None:
        """Tensors created while ``module`` runs its forward are activations of ``part``."""

        depths: list[int] = []

        def pre(_m: Any, _a: Any) -> None:
            depths.append(self.push_part(part))

        def post(_m: Any, _a: Any, _o: Any) -> None:
            if depths:
                self.pop_part(depths.pop())

        self._handles.append(module.register_forward_pre_hook(pre))
        self._handles.append(module.register_forward_hook(post, always_call=True))

    def attach_logits(self, lm_head: torch.nn.Module) -> None:
        """From lm_head on, the forward is ``logits_loss`` (popped with the enclosing part); in backward the
        logits/loss phase ends when the gradient of lm_head's input is computed."""

        weight = getattr(lm_head, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.requires_grad:
            self.head_grad_shape = tuple(weight.shape)

        def pre(_m: Any, args: Any) -> None:
            if self.phase == "forward":
                self.marks["pre_logits"] = self.now["activations/llm"]
            self.push_part("logits_loss")
            hidden = args[0] if args else None
            if isinstance(hidden, torch.Tensor) and hidden.requires_grad and torch.is_grad_enabled():
                hidden.register_hook(self._end_logits_hook)

        self._handles.append(lm_head.register_forward_pre_hook(pre))

    def _end_logits_hook(self, grad: torch.Tensor) -> None:
        self.end_logits_backward()

    def attach_recompute(self, layers: Iterable[torch.nn.Module]) -> None:
        """Mark the forward of the children of checkpointed layers: in backward it is a recompute.

        transformers' ``GradientCheckpointingLayer`` checkpoints ``forward``, not ``__call__``, so hooks on
        the layer itself do not fire during the recompute; hooks on its children do."""

        def pre(_m: Any, _a: Any) -> None:
            self.recompute_depth += 1
            if self.phase == "backward":
                self.layer_window = True  # a layer's recompute opens its backward window
                self._refresh()

        def post(_m: Any, _a: Any, _o: Any) -> None:
            self.recompute_depth -= 1
            if self.phase == "backward":
                self._refresh()

        def close_window(_grad: torch.Tensor) -> None:
            self.layer_window = False

        def layer_pre(_m: Any, args: Any) -> None:  # the gradient of the layer input closes the window
            x = args[0] if args else None
            if self.phase == "forward" and isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled():
                x.register_hook(close_window)

        for layer in layers:
            self._handles.append(layer.register_forward_pre_hook(layer_pre))
            for child in layer.children():
                self._handles.append(child.register_forward_pre_hook(pre))
                self._handles.append(child.register_forward_hook(post, always_call=True))

    def attach_grads(self, params: Iterable[torch.nn.Parameter],
                     after: Callable[[torch.nn.Parameter], None] | None = None) -> None:
        """File each accumulated ``.grad`` under ``model_states/grads``; then call ``after(param)`` (ZeRO
        emulation drops the grad there, as the reduce into the bucket would)."""

        def hook(p: torch.nn.Parameter) -> None:
            self.retag(p.grad, "model_states/grads")
            if after is not None:
                after(p)

        for p in params:
            if p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(hook))

    # ---- results ---------------------------------------------------------------------------------
    def peak(self, phase: str, iteration: int | None = None) -> Peak:
        """The peak of ``phase`` in ``iteration`` (default: the last one)."""
        it = self.iteration if iteration is None else iteration
        return self.peaks.get((it, phase), Peak())
