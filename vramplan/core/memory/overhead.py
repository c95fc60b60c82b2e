"""Fixed overheads outside the model: CUDA context, NCCL buffers, cuBLAS workspaces, allocator slack.

Every constant here is empirical; where it was measured is said next to it (engine-internals.md §6).
None has been calibrated by vramplan on real hardware yet: the accuracy benchmark reports how the
totals compare with published measurements (benchmarks/accuracy.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hardware import GPUSpec
from ..scenario import Engine, Scenario
from ..units import MiB

CUDA_CONTEXT_BYTES = 426 * MiB
"""CUDA context with lazy module loading: 426 MiB on an RTX 6000 Ada with torch 2.10 + CUDA 13.0
(unsloth-zoo PR #1053); other reports: ~287 MB (pytorch PR #86509), ~400 MB (pytorch #109888)."""

CUBLAS_WORKSPACE_BYTES = 8_519_680
"""Default CUBLAS_WORKSPACE_CONFIG ``:4096:2:16:8`` = 8,519,680 B per handle/stream (PyTorch forum,
"unexpected 8519680 B allocation")."""

CUBLASLT_WORKSPACE_SM90_BYTES = 32 * MiB
CUBLASLT_WORKSPACE_AMPERE_BYTES = 4 * MiB
"""cuBLASLt workspace: 32 MiB on sm90+, 4 MiB on >=24 GB Ampere/Ada (pytorch PR #120925)."""

NCCL_PCIE_COMMUNICATOR_BYTES = 350 * MiB
NCCL_NVLINK_COMMUNICATOR_BYTES = 1280 * MiB
"""NCCL buffers per communicator, heuristic midpoints of 0.2-0.5 GB (PCIe boxes) and 0.5-2 GB
(NVSwitch boxes) from NVIDIA/nccl #864/#986 reports; not measured by us."""

FRAGMENTATION_STABLE = 0.05
FRAGMENTATION_VARIABLE = 0.10
FRAGMENTATION_GATHER_CHURN = 0.15
FRAGMENTATION_EXPANDABLE = 0.02
"""Reserved-but-unallocated share: 3-10 % for stable shapes, 10-30 % with variable-length batches or
ZeRO-3/FSDP1 gather churn, 1-5 % with expandable_segments (engine-internals.md §6, heuristic midpoints;
PyTorch c10/cuda/CUDACachingAllocator.cpp). Applied to activations, buffers and temporaries; the gather
rate applies to the gathered parameters on top."""


def cublas_bytes(gpu: GPUSpec) -> int:
    """cuBLAS + cuBLASLt workspaces of the compute stream (inside ``memory_allocated``)."""
    lt = CUBLASLT_WORKSPACE_SM90_BYTES if gpu.is_hopper_or_newer else CUBLASLT_WORKSPACE_AMPERE_BYTES
    return CUBLAS_WORKSPACE_BYTES + lt


def nccl_bytes(scn: Scenario) -> int:
    """NCCL buffers: one communicator per parallel group the rank belongs to (none on one GPU)."""
    if scn.cluster.world_size == 1:
        return 0
    par = scn.parallel
    communicators = 1 + (par.tp > 1) + (par.pp > 1) + 2 * (par.ep > 1)
    per = NCCL_NVLINK_COMMUNICATOR_BYTES if scn.cluster.gpu.interconnect == "nvlink" else NCCL_PCIE_COMMUNICATOR_BYTES
    return communicators * per


@dataclass(frozen=True, slots=True)
class Fragmentation:
    """Reserved-but-unallocated slack: a rate on all dynamic bytes plus one on gathered parameters."""

    dynamic: float
    gather: float


def fragmentation_fraction(scn: Scenario) -> Fragmentation:
    """Slack rates of the caching allocator for this scenario (see the constants above)."""
    par = scn.parallel
    if par.expandable_segments:
        return Fragmentation(FRAGMENTATION_EXPANDABLE, 0.0)
    dynamic = FRAGMENTATION_VARIABLE if (scn.model.is_vlm or scn.model.is_moe) else FRAGMENTATION_STABLE
    churn = (par.engine is Engine.DEEPSPEED and par.zero == 3) or par.engine is Engine.FSDP
    # padded-to-longest batches and MoE routing vary tensor shapes; gathers churn same-size blocks.
    return Fragmentation(dynamic, FRAGMENTATION_GATHER_CHURN if churn else 0.0)


def allocator_slack_bytes(scn: Scenario, items: dict[str, int]) -> int:
    """``overhead/allocator`` for a breakdown: the dynamic rate on activations, buffers and temporaries,
    plus the gather rate on ``buffers/gathered_params``."""
    frag = fragmentation_fraction(scn)
    dynamic = sum(v for k, v in items.items() if k.split("/")[0] in ("activations", "buffers", "temporaries"))
    return int(dynamic * frag.dynamic + items.get("buffers/gathered_params", 0) * frag.gather)
