"""FSDP2 on fake tensors with a fake process group: the real ``fully_shard`` code, traced on rank 0.

Owns ``fake_process_group`` (``dist.init_process_group("fake")`` with ``FakeStore``: collectives are no-ops,
their buffers are real allocations; tracing-on-cpu.md §4) and ``FSDP2Engine``, which shards the model as
accelerate's FSDP2 plugin does (``fsdp2_prepare_model``): ``fully_shard`` on every decoder layer, then on
the root, with the same ``reshard_after_forward`` everywhere (``full-shard``: True, ``shard-grad-op``:
False; ``hybrid-shard``: a 2-D mesh replicate x shard over the GPUs of one node) and, for mixed precision,
``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` over fp32 sharded parameters (accelerate
upcasts trainable parameters).

Rank 0 is reported. FSDP2 shards dim 0 with ``ceil(n / world)`` rows per rank, so rank 0 always holds the
largest shard: it is the most loaded rank. Accounting: all-gather outputs, unsharded parameters and
reduce-scatter buffers are filed under ``buffers/gathered_params`` (the FSDPParamGroup methods that create
them run with that key); the reduce-scattered gradient shards under ``model_states/grads``. The optimizer
runs on DTensor parameters; the tracker counts their local shards. CPU offload is not traced (everything is
a fake CPU tensor, so host and device cannot be told apart). Imports torch and ``vramplan.core``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ..core.scenario import FsdpSharding, Offload, Scenario
from .build import Built, TraceUnsupported
from .optim import make_optimizer, step_and_file_states
from .tracker import StorageTracker

GATHER_KEY = "buffers/gathered_params"


@contextlib.contextmanager
def fake_process_group(scn: Scenario) -> Iterator[Any]:
    """A fake process group of the scenario's world size and its device mesh (rank 0)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    par = scn.parallel
    if par.offload_param is not Offload.NONE or par.offload_optimizer is not Offload.NONE:
        raise TraceUnsupported("FSDP CPU offload is not traced (host and device are both fake CPU tensors); "
                               "use --estimator analytic")
    if dist.is_initialized():
        raise TraceUnsupported("a torch.distributed process group is already initialised in this process")
    world = scn.dp_degree
    dist.init_process_group("fake", rank=0, world_size=world, store=FakeStore())
    try:
        if par.fsdp_sharding is FsdpSharding.HYBRID_SHARD and world > scn.cluster.gpus_per_node:
            shard = scn.cluster.gpus_per_node
            mesh = init_device_mesh("cpu", (world // shard, shard), mesh_dim_names=("replicate", "shard"))
        else:
            mesh = init_device_mesh("cpu", (world,))
        yield mesh
    finally:
        dist.destroy_process_group()


class FSDP2Engine:
    """fully_shard the built model (module docstring); the optimizer steps the local shards."""

    def __init__(self, scn: Scenario, built: Built, mesh: Any) -> None:
        self.scn, self.built, self.mesh = scn, built, mesh
        self.optimizer: torch.optim.Optimizer | None = None
        self.notes: list[str] = []
        if scn.parallel.engine.value == "fsdp":
            self.notes.append("FSDP1 traced with FSDP2's fully_shard (per-parameter sharding); FSDP1's flat "
                              "parameters pad and gather slightly differently")
        self._restore: list[tuple[Any, str, Any]] = []

    def shard(self, tracker: StorageTracker) -> None:
        """fully_shard every decoder layer and the root; route FSDP's buffers to ``buffers/gathered_params``."""
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = self.built.policy
        kwargs: dict[str, Any] = {"mesh": self.mesh,
                                  "reshard_after_forward": self.scn.parallel.fsdp_sharding is not FsdpSharding.SHARD_GRAD_OP}
        if policy.autocast:
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=policy.compute, reduce_dtype=torch.float32)
        for layer in self.built.layers:
            fully_shard(layer, **kwargs)
        fully_shard(self.built.model, **kwargs)
        self._route_buffers(tracker)

    def _route_buffers(self, tracker: StorageTracker) -> None:
        from torch.distributed.fsdp._fully_shard._fsdp_param_group import FSDPParamGroup

        def wrap(name: str, after: Any = None) -> None:
            orig = getattr(FSDPParamGroup, name)

            def method(group: Any, *args: Any, **kwargs: Any) -> Any:
                with tracker.override(GATHER_KEY):
                    out = orig(group, *args, **kwargs)
                if after is not None:
                    after(group)
                return out

            self._restore.append((FSDPParamGroup, name, orig))
            setattr(FSDPParamGroup, name, method)

        def file_grads(group: Any) -> None:
            for fp in group.fsdp_params:
                tracker.retag(fp.sharded_param.grad, "model_states/grads")

        for name in ("lazy_init", "unshard", "wait_for_unshard", "reshard", "pre_backward", "finalize_backward"):
            wrap(name)
        wrap("post_backward", file_grads)

    def setup(self, tracker: StorageTracker) -> None:
        """The scenario's optimizer over the (sharded) trainable parameters."""
        self.optimizer = make_optimizer(self.scn, self.built.trainable)

    def before_backward(self, tracker: StorageTracker) -> None:
        """Nothing to allocate before backward."""

    def step(self, tracker: StorageTracker) -> None:
        """optimizer.step(); zero_grad(set_to_none=True); file the states."""
        assert self.optimizer is not None
        step_and_file_states(self.optimizer, tracker)

    def adjust(self, phase: str, items: dict[str, int]) -> dict[str, int]:
        """Traced items as they are."""
        return dict(items)

    def close(self) -> None:
        """Undo the FSDPParamGroup wrappers."""
        for owner, name, orig in self._restore:
            setattr(owner, name, orig)
        self._restore.clear()
