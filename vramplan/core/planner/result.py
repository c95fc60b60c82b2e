"""What the planner returns: plans that fit, rejections with their reason, and the request that drove it.

Pure data (frozen dataclasses); the search lives in ``search.py``, rendering in ``vramplan.report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ScenarioError
from ..estimate import Estimate
from ..hardware import GPUSpec
from ..scenario import Method, Scenario
from ..steptime import StepTime


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanRequest:
    """What to search (the CLI flags of ``vramplan plan``)."""

    global_batch: int | None = None
    """Samples per optimizer step over all data-parallel ranks; None: the starting scenario's
    micro_batch x grad_accum x data-parallel degree."""
    methods: tuple[Method, ...] = ()
    """Training methods to consider; empty: the starting scenario's method only."""
    max_micro_batch: int = 64
    top: int | None = None
    """Keep only the best ``top`` plans (all families are still searched, for the rejections)."""
    model_parallel: bool = True
    """Also search tensor/pipeline/expert parallelism (outside HF Trainer's mainstream)."""
    nvme: bool = False
    """Also search ZeRO-Infinity NVMe offload (tried only where CPU offload runs out of host RAM). Off by
    default: it needs a fast local SSD of roughly 16 B per parameter and runs at disk speed; when nothing
    else fits, the nearest options say what NVMe offload would give."""
    optimizer_changes: bool = True
    """Also try 8-bit AdamW, Adafactor and pure bf16 when the starting optimizer/precision do not fit."""

    def __post_init__(self) -> None:
        if self.global_batch is not None and self.global_batch < 1:
            raise ScenarioError("--global-batch", self.global_batch, "must be at least 1")
        if self.max_micro_batch < 1:
            raise ScenarioError("max_micro_batch", self.max_micro_batch, "must be at least 1")
        if self.top is not None and self.top < 1:
            raise ScenarioError("--top", self.top, "must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A setup that fits (GPU with headroom, and host RAM where known), with its step time."""

    scenario: Scenario
    estimate: Estimate
    step_time: StepTime
    changes: tuple[str, ...]
    """Human-readable differences from the starting scenario."""
    notes: tuple[str, ...] = ()
    """Requirements of the setup (e.g. a pipeline model wrapper) and batch-size caveats."""

    @property
    def changes_method(self) -> bool:
        """Whether the plan trains with another method than the starting scenario (LoRA/QLoRA)."""
        return any(c.startswith("method ") for c in self.changes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """A setup that does not fit, with the closest it got."""

    scenario: Scenario
    estimate: Estimate
    kind: str
    """``gpu`` (device memory) or ``host`` (host RAM for offload, model loading, saving)."""
    component: str
    """Largest breakdown key at the GPU peak (``activations/logits_loss``), or largest host key."""
    component_bytes: int
    over_by_bytes: int
    """How far over the usable GPU memory (or the node's host RAM) the setup is."""
    changes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanResult:
    """The outcome of one search."""

    start: Scenario
    start_estimate: Estimate
    request: PlanRequest
    global_batch: int
    """The global batch the plans keep (exactly or as near as divisibility allows)."""
    plans: tuple[Plan, ...]
    """Best first (shortest step time, then fewest changes)."""
    rejected: tuple[Rejection, ...]
    """Closest to fitting first."""
    assumptions: tuple[str, ...]
    evaluated: int
    """Memory estimates computed."""
    families: int
    """Setups (engine x stage x offload x sharding x parallel degrees x method) considered."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fits(self) -> bool:
        """Whether at least one plan fits."""
        return bool(self.plans)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizing:
    """The smallest number of GPUs of one type that gives a plan, for one training method."""

    gpu: GPUSpec
    method: Method
    count: int | None
    """None: nothing fits up to ``max_gpus``."""
    plan: Plan | None
    max_gpus: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NearestOption:
    """One way out when nothing fits, with its numbers."""

    kind: str
    """``host_ram`` (offload fits the GPUs but needs more host RAM), ``method`` (LoRA/QLoRA),
    ``more_gpus`` (same GPU type), ``gpu_type`` (another GPU type), ``nvme`` (ZeRO-Infinity NVMe
    offload, which the search leaves out unless asked)."""
    plan: Plan | None = None
    rejection: Rejection | None = None
    sizing: Sizing | None = None
    host_ram_needed_bytes: int | None = None
