"""How the traced rank holds its model states: replicated (single GPU, DDP) or DeepSpeed ZeRO by equivalent accounting.

Owns the engine side of a traced step: which persistent buffers exist, what happens to a gradient when it
is accumulated, and what the optimizer step allocates.

- ``Replicated`` (single GPU, DDP, FSDP ``no-shard``): the model's own parameters, ``.grad`` tensors and
  the scenario's torch optimizer, all traced. DDP (``gradient_as_bucket_view=False``, the default) also
  allocates its gradient buckets at construction: one flat buffer of all trainable weights
  (``buffers/ddp_buckets``), allocated here as a tensor so that it coexists with everything else.
- ``ZeroEquivalent`` (DeepSpeed, stages 0-3, with or without offload): ZeRO cannot run in one process, so
  one rank is traced unsharded and ZeRO's partitioning is applied to the model states by the analytical
  rules (``core/memory/states.py``, ``buffers.py``), as tensors where their timing matters:

  * parameters: traced 16-bit weights (DeepSpeed casts the model); stage 3 replaces them, in every
    phase's breakdown, by the stage-3 partition + persistent small params (``states.params``) and adds
    the gathered working set (``buffers/gathered_params``: ``gathered_forward``/``gathered_backward``);
  * gradients: each ``.grad`` is traced until accumulated, then dropped (stages 2 and 3: reduced into the
    partition, ZeRO-2's of the most loaded rank's size: boundary parameters whole, ``zero_partition.py``;
    stage 0 bf16 with ``grad_accum_dtype: fp32`` (BF16_Optimizer): added into the fp32 buffer; stage 0 fp16 and
    bf16 by default (FP16_Optimizer, DDP_BFLOAT16): kept as autograd's .grad until the step; stage 1 and
    offload: copied to the flat buffer); the persistent gradient memory (``states.grads_persistent``) is one
    tensor allocated at setup;
  * IPG buckets (``buffers/zero_buckets``): stages 1-2 allocate them at the first backward and keep them
    while accumulating, stage 3 at setup for good; without accumulation ZeRO-2's gradient partition is
    allocated at the first reduction and freed by the step, and ZeRO-1's full grads are autograd's .grad
    tensors (as measured on real DeepSpeed ranks, ``deepspeed_cpu.py``);
  * optimizer: the fp32 master partition (``model_states/master``) is a real parameter, the scenario's
    torch optimizer steps it (states and foreach temporaries traced); its gradient is the 16-bit grad
    partition cast to fp32 (stage 3: per ``sub_group_size`` group, after a 16-bit flatten), then freed;
    offloaded optimizers step on the host (nothing on the GPU).

Imports torch and ``vramplan.core``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.memory.buffers import engine_buffers
from ..core.memory.params import rank_params
from ..core.memory.states import model_state_bytes, stage0_bf16_optimizer
from ..core.scenario import Engine, Precision, Scenario
from ..core.units import shard
from .build import Built
from .optim import make_optimizer, state_tensors, step_and_file_states
from .tracker import StorageTracker


class Replicated:
    """Single GPU / DDP / FSDP no-shard: everything traced (module docstring)."""

    def __init__(self, scn: Scenario, built: Built) -> None:
        self.scn, self.built = scn, built
        self.optimizer: torch.optim.Optimizer | None = None
        self.buckets: torch.Tensor | None = None
        self.adders: dict[str, dict[str, int]] = {}

    def setup(self, tracker: StorageTracker) -> None:
        """Optimizer, grad hooks, DDP buckets."""
        params = self.built.trainable
        self.optimizer = make_optimizer(self.scn, params)
        tracker.attach_grads(params)
        par = self.scn.parallel
        ddp = par.engine is Engine.DDP or par.engine in (Engine.FSDP, Engine.FSDP2)
        if ddp and self.scn.cluster.world_size > 1:
            numel = sum(p.numel() for p in params)
            tracker.setup_key = "buffers/ddp_buckets"
            tracker._refresh()
            self.buckets = torch.empty(numel, dtype=params[0].dtype if params else torch.bfloat16)
            tracker.setup_key = "model_states/params"
            tracker._refresh()

    def before_backward(self, tracker: StorageTracker) -> None:
        """Nothing to allocate before backward."""

    def adjust(self, phase: str, items: dict[str, int]) -> dict[str, int]:
        """The traced items of ``phase`` plus what the emulation adds by accounting (nothing here)."""
        out = dict(items)
        for key, value in self.adders.get(phase, {}).items():
            out[key] = out.get(key, 0) + value
        return out

    def step(self, tracker: StorageTracker) -> None:
        """optimizer.step(); zero_grad(set_to_none=True); file the states."""
        assert self.optimizer is not None
        step_and_file_states(self.optimizer, tracker)


class ZeroEquivalent(Replicated):
    """DeepSpeed ZeRO stage 0-3 by equivalent accounting (module docstring)."""

    def __init__(self, scn: Scenario, built: Built) -> None:
        super().__init__(scn, built)
        self.rp = rank_params(scn)
        self.states = model_state_bytes(scn, self.rp)
        self.buf = engine_buffers(scn, self.rp, self.states)
        self.stage = scn.parallel.zero
        # ZeRO-0 with FP16_(Unfused)Optimizer (fp16, or bf16 as DDP_BFLOAT16): autograd's .grads are the 16-bit
        # gradients, the fp32 master and states are unpartitioned (states.py); else BF16_Optimizer at stage 0
        self.ddp16 = self.stage == 0 and (scn.train.precision is Precision.FP16_MIXED or (
            scn.train.precision in (Precision.BF16_MIXED, Precision.BF16_PURE) and not stage0_bf16_optimizer(scn)))
        self.w_dtype = built.policy.frozen
        self.notes = [f"DeepSpeed ZeRO-{self.stage} by equivalent accounting: one rank traced unsharded; gradient "
                      "partitions, buckets, fp32 master and optimizer partitions as tensors of the analytical sizes"
                      + ("; stage-3 params and gathers by the analytical rules" if self.stage == 3 else "")]
        self.persistent_grads: torch.Tensor | None = None
        self.bucket: torch.Tensor | None = None
        self.masters: list[torch.nn.Parameter] = []
        if self.stage == 3:
            # the gathered unit (+ prefetch window) by accounting; the unit's full gradients are traced (each
            # .grad exists until the hook drops it, as it does until ZeRO-3's reduce-scatter)
            gathered = {"buffers/gathered_params": self.buf.gathered_forward}
            self.adders = {"forward": gathered, "backward": gathered}

    def _empty(self, tracker: StorageTracker, key: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        saved = tracker.setup_key, tracker.phase
        tracker.setup_key, tracker.phase = key, "setup"
        tracker._refresh()
        t = torch.empty(numel, dtype=dtype)
        tracker.setup_key, tracker.phase = saved
        tracker._refresh()
        return t

    def setup(self, tracker: StorageTracker) -> None:
        """Persistent grad buffer, fp32 master partition(s) and their optimizer; grads dropped after accumulation."""
        st = self.states
        params = self.built.trainable
        tracker.attach_grads(params, after=self._accumulated if self._drops_grads() else None)
        self._tracker = tracker
        elem = torch.tensor([], dtype=self.w_dtype).element_size()
        if st.grads_persistent and self._drops_grads() and not st.grads_freed_after_step:
            self._allocate_persistent_grads()
        if self.stage == 3 and self.buf.zero_buckets:  # stage3.py allocates its IPG bucket in __init__
            self.bucket = self._empty(tracker, "buffers/zero_buckets", self.buf.zero_buckets // elem, self.w_dtype)
        if st.offloads_optimizer or (st.master == 0 and st.optimizer == 0):
            self.optimizer = None
            return
        dp = st.dp_shard if self.stage else 1
        master_numel = st.master // 4 if st.master else shard(self.rp.trainable, dp)
        if self.ddp16:
            master_numel = self.rp.trainable
        group = min(self.scn.parallel.deepspeed.sub_group_size, master_numel) if self.stage == 3 else master_numel
        sizes = [group] * (master_numel // group) + ([master_numel % group] if master_numel % group else [])
        dtype = torch.float32 if st.master or self.scn.train.precision is Precision.FP32 else self.w_dtype
        self.masters = [torch.nn.Parameter(self._empty(tracker, "model_states/master" if st.master else
                                                       "model_states/params", n, dtype)) for n in sizes]
        self.optimizer = make_optimizer(self.scn, self.masters)
        self._elem = elem

    def _allocate_persistent_grads(self) -> None:
        st = self.states
        dtype = torch.float32 if self.stage == 0 and not self.ddp16 else self.w_dtype
        size = st.grads_persistent // torch.tensor([], dtype=dtype).element_size()
        self.persistent_grads = self._empty(self._tracker, "model_states/grads", size, dtype)

    def _drops_grads(self) -> bool:
        """Whether a param's .grad leaves the traced rank after accumulation: not at ZeRO-0 fp16, and not at
        ZeRO-1 without accumulation (its full grads are autograd's own .grad tensors until the step)."""
        if self.ddp16:
            return False
        return not (self.stage == 1 and self.states.grads_persistent == 0 and not self.states.offloads_optimizer)

    def _accumulated(self, p: torch.nn.Parameter) -> None:
        """A gradient reached the engine: the freed partition buffer comes back at the first one (ZeRO-2 without
        accumulation: ``copy_grads_in_partition``), then the .grad is dropped (reduced into the buffer)."""
        if self.persistent_grads is None and self.states.grads_freed_after_step and self.states.grads_persistent:
            self._allocate_persistent_grads()
        p.grad = None

    def before_backward(self, tracker: StorageTracker) -> None:
        """The IPG bucket(s) (stages 1-3) exist from the first backward on."""
        if self.bucket is None and self.buf.zero_buckets:
            elem = torch.tensor([], dtype=self.w_dtype).element_size()
            self.bucket = self._empty(tracker, "buffers/zero_buckets", self.buf.zero_buckets // elem, self.w_dtype)

    def step(self, tracker: StorageTracker) -> None:
        """Master step per (sub-)group: 16-bit flat grad (stage 3) -> fp32 grad -> optimizer.step()."""
        if self.optimizer is not None:
            for master in self.masters:
                flat = None
                if self.stage == 3:  # flatten the sub-group's 16-bit grads, then the fp32 copy (both live)
                    flat = torch.empty(master.numel(), dtype=self.w_dtype)
                    master.grad = flat.float() if master.dtype == torch.float32 else flat
                else:
                    master.grad = torch.empty(master.numel(), dtype=master.dtype)
                self.optimizer.step()
                master.grad = None
                del flat
            device, host = state_tensors(self.optimizer)
            tracker.track_existing(device, "model_states/optimizer")
            for t in host:
                tracker.forget(t)
        for p in self.built.trainable:
            p.grad = None
        if self.scn.train.grad_accum == 1 and self.stage != 3:
            self.bucket = None
        if self.states.grads_freed_after_step:
            self.persistent_grads = None

    def adjust(self, phase: str, items: dict[str, int]) -> dict[str, int]:
        """Stage 3: the partitioned params replace the traced full ones; add the gathered working set."""
        out = dict(items)
        if self.stage == 3:
            out["model_states/params"] = self.states.params
        for key, value in self.adders.get(phase, {}).items():
            out[key] = out.get(key, 0) + value
        return out


def make_engine(scn: Scenario, built: Built) -> Any:
    """The engine emulation of the scenario (FSDP2 sharding lives in ``fsdp.py``)."""
    if scn.parallel.engine is Engine.DEEPSPEED:
        return ZeroEquivalent(scn, built)
    return Replicated(scn, built)
