"""GPUs and clusters. The catalog data lives in ``vramplan/registry/gpus.json``; this module only holds the types."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SpecError


@dataclass(frozen=True, slots=True, kw_only=True)
class GPUSpec:
    """One GPU model as the estimator and the step-time model see it."""

    id: str
    display_name: str
    memory_bytes: int
    """What ``torch.cuda.get_device_properties().total_memory`` reports (the OOM message's 'total capacity')."""
    bf16: bool = True
    flash_attention: bool = True
    compute_capability: str = ""
    memory_bandwidth_bytes_per_s: int = 0
    bf16_dense_flops: int = 0
    """Dense tensor-core bf16 FLOP/s (fp16 where the GPU has no bf16)."""
    interconnect: str = "pcie"
    """``nvlink`` or ``pcie``."""
    p2p: bool = True
    """Peer-to-peer between GPUs of a node (RTX 40xx: no, traffic goes through host memory)."""
    link_bandwidth_bytes_per_s: int = 0
    """Per-GPU bandwidth to the other GPUs of the node (NVLink aggregate, else PCIe per direction)."""
    pcie_bandwidth_bytes_per_s: int = 0
    """Host <-> GPU bandwidth per direction (offload traffic)."""
    vendor: str = "nvidia"

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0:
            raise SpecError(f"gpu {self.id}: memory_bytes={self.memory_bytes} must be positive")

    @property
    def is_hopper_or_newer(self) -> bool:
        """sm90+ (cuBLASLt workspace 32 MiB, FA3, NVLS)."""
        try:
            return self.vendor == "nvidia" and float(self.compute_capability or "0") >= 9.0
        except ValueError:
            return False

    @property
    def is_consumer_ada(self) -> bool:
        """RTX 40xx-class card without P2P (needs NCCL_P2P_DISABLE=1 with several GPUs)."""
        return not self.p2p and self.compute_capability.startswith("8.9")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """Identical GPUs spread over identical nodes."""

    gpu: GPUSpec
    gpus_per_node: int = 1
    nodes: int = 1
    host_ram_bytes: int | None = None
    """Host RAM per node; ``None`` when unknown (host-RAM feasibility is then not checked)."""

    def __post_init__(self) -> None:
        if self.gpus_per_node < 1:
            raise SpecError(f"hardware.gpus_per_node={self.gpus_per_node} must be at least 1")
        if self.nodes < 1:
            raise SpecError(f"hardware.nodes={self.nodes} must be at least 1")

    @property
    def world_size(self) -> int:
        """Total number of GPUs (one rank each)."""
        return self.gpus_per_node * self.nodes
