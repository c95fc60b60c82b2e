"""The breakdown: slash-path keys -> bytes, shared by the analytical, traced and measured estimates.

The keys mirror PyTorch MemTracker's categories (PARAM, GRAD, OPT, ACT, TEMP, OTH) so that comparing
two breakdowns is a diff. Which keys count toward which total:

- ``allocated`` (``torch.cuda.max_memory_allocated``): every key except ``overhead/allocator``,
  ``overhead/cuda_context`` and ``overhead/nccl``;
- ``reserved`` (``max_memory_reserved``): allocated + ``overhead/allocator``;
- ``device_used`` (nvidia-smi): reserved + ``overhead/cuda_context`` + ``overhead/nccl``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

KEYS: tuple[str, ...] = (
    "model_states/params",
    "model_states/grads",
    "model_states/master",
    "model_states/optimizer",
    "activations/llm",
    "activations/vision",
    "activations/projector",
    "activations/logits_loss",
    "buffers/zero_buckets",
    "buffers/gathered_params",
    "buffers/ddp_buckets",
    "buffers/moe",
    "temporaries/recompute",
    "temporaries/backward",
    "temporaries/optimizer_step",
    "temporaries/dequant",
    "overhead/cublas",
    "overhead/allocator",
    "overhead/cuda_context",
    "overhead/nccl",
)
"""Every key a breakdown may hold, in display order."""

NOT_ALLOCATED = frozenset({"overhead/allocator", "overhead/cuda_context", "overhead/nccl"})
OUTSIDE_ALLOCATOR = frozenset({"overhead/cuda_context", "overhead/nccl"})

HOST_KEYS: tuple[str, ...] = (
    "host/process_base",
    "host/model_load",
    "host/offload_optimizer",
    "host/offload_params",
    "host/checkpoint_save",
)
"""Host-RAM items of one node."""


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Bytes per key; missing keys are 0. Immutable."""

    items: Mapping[str, int]

    def __post_init__(self) -> None:
        unknown = set(self.items) - set(KEYS)
        if unknown:
            raise ValueError(f"unknown breakdown keys: {sorted(unknown)}")
        if any(v < 0 for v in self.items.values()):
            raise ValueError("breakdown values must be non-negative")
        object.__setattr__(self, "items", MappingProxyType({k: int(self.items.get(k, 0)) for k in KEYS}))

    def __getitem__(self, key: str) -> int:
        return self.items[key]

    @property
    def allocated_bytes(self) -> int:
        """What the CUDA caching allocator has handed out to live tensors."""
        return sum(v for k, v in self.items.items() if k not in NOT_ALLOCATED)

    @property
    def reserved_bytes(self) -> int:
        """Allocator segments: allocated plus cached-but-free blocks."""
        return self.allocated_bytes + self.items["overhead/allocator"]

    @property
    def device_used_bytes(self) -> int:
        """What nvidia-smi shows for the process: reserved + CUDA context + NCCL buffers."""
        return sum(self.items.values())

    def group(self, prefix: str) -> int:
        """Sum of the keys under ``prefix`` (``model_states``, ``activations`` ...)."""
        return sum(v for k, v in self.items.items() if k.split("/")[0] == prefix)

    def as_dict(self) -> dict[str, int]:
        """Plain dict (every key present)."""
        return dict(self.items)

    def diff(self, other: Breakdown) -> dict[str, int]:
        """Per-key ``self - other`` (non-zero keys only)."""
        return {k: self.items[k] - other.items[k] for k in KEYS if self.items[k] != other.items[k]}
