"""The search: estimate candidates of every family, keep those that fit, rank them by step time.

Pruning (each step keeps the search exact under the estimator's monotonicity: activations and
buffers never shrink when the micro-batch grows or checkpointing is relaxed):

1. *screen*: a family is tried first with its most frugal variant at micro-batch 1 and full
   checkpointing; if that does not fit, nothing in the family does, and one ``Rejection`` records how
   close it came (one or two estimates per infeasible family);
2. *ladder*: the first variant (fewest changes) that fits at micro-batch 1 is kept;
3. *micro-batch*: for each checkpointing level, a binary search finds the largest micro-batch that
   fits; every smaller one fits too, so the step time (cheap, no memory estimate) picks among them;
4. *memo*: every estimate is cached by candidate;
5. NVMe families are only tried when their CPU counterpart fits the GPUs but not the host RAM
   (the GPU side is the same; NVMe only moves host RAM to disk, at a lower speed).

Every returned plan's ``Estimate.fits`` is true (checked, not assumed). Infeasible input never
raises: it ends up in ``rejected``.
"""

from __future__ import annotations

from ..breakdown import HOST_KEYS, KEYS
from ..errors import VramplanError
from ..estimate import Estimate, estimate_scenario
from ..scenario import Engine, GradCkpt, Offload, Scenario
from ..steptime import estimate_step_time
from .changes import describe_changes
from .result import Plan, PlanRequest, PlanResult, Rejection
from .space import (
    Family,
    Variant,
    allowed_methods,
    build_scenario,
    ckpt_levels,
    enumerate_families,
    frugal_variants,
    micro_batch_options,
    per_rank_samples,
    variants,
)

Candidate = tuple[Scenario, Estimate]


def start_global_batch(start: Scenario) -> int:
    """micro_batch x grad_accum x data-parallel degree of the starting scenario."""
    return start.train.micro_batch * start.train.grad_accum * start.dp_degree


def rejection_of(scn: Scenario, est: Estimate, start: Scenario | None = None) -> Rejection:
    """Why ``est`` does not fit: the GPU (largest component, bytes over) or the host RAM."""
    changes = describe_changes(start, scn) if start is not None else ()
    if not est.fits_gpu:
        bd = est.peak.breakdown
        key = max(KEYS, key=lambda k: bd[k])
        return Rejection(scenario=scn, estimate=est, kind="gpu", component=key, component_bytes=bd[key],
                         over_by_bytes=-est.margin_bytes, changes=changes)
    ram = scn.cluster.host_ram_bytes or 0
    key = max(HOST_KEYS, key=lambda k: est.host.get(k, 0))
    return Rejection(scenario=scn, estimate=est, kind="host", component=key, component_bytes=est.host.get(key, 0),
                     over_by_bytes=est.host_ram_bytes - ram, changes=changes)


def _closeness(rej: Rejection) -> tuple[int, int]:
    """Sort key: GPU-fitting (host-RAM) rejections first, then by bytes over."""
    return (0 if rej.kind == "host" else 1, rej.over_by_bytes)


class Searcher:
    """One search over the families of a starting scenario, with an estimate cache."""

    def __init__(self, start: Scenario, request: PlanRequest) -> None:
        self.start = start
        self.request = request
        self.global_batch = request.global_batch or start_global_batch(start)
        self.memo: dict[tuple[object, ...], Candidate | None] = {}
        self.evaluated = 0
        self.notes: list[str] = []

    # -- candidates -----------------------------------------------------------------------------
    def candidate(self, fam: Family, var: Variant, ckpt: GradCkpt, mb: int, ga: int) -> Candidate | None:
        """Scenario and estimate of one candidate (None if the engines cannot run it)."""
        key = (fam, var, ckpt, mb, ga)
        if key in self.memo:
            return self.memo[key]
        try:
            scn = build_scenario(self.start, fam, var, ckpt, mb, ga)
        except VramplanError:
            self.memo[key] = None
            return None
        est = estimate_scenario(scn)
        self.evaluated += 1
        self.memo[key] = (scn, est)
        return self.memo[key]

    def _fits(self, fam: Family, var: Variant, ckpt: GradCkpt, mb: int, ga: int) -> bool:
        cand = self.candidate(fam, var, ckpt, mb, ga)
        return cand is not None and cand[1].fits

    def batch(self, fam: Family) -> tuple[int, bool, list[int]]:
        """(samples per rank, global batch kept exactly, micro-batch options) for a family."""
        dp = self.start.cluster.world_size // (fam.tp * fam.pp)
        per_rank, exact = per_rank_samples(self.global_batch, dp)
        return per_rank, exact, micro_batch_options(per_rank, self.request.max_micro_batch)

    # -- one family -----------------------------------------------------------------------------
    def screen(self, fam: Family) -> tuple[Variant | None, Rejection | None]:
        """The first ladder variant that fits at micro-batch 1 with full checkpointing, or the rejection."""
        per_rank, _, options = self.batch(fam)
        mb0 = options[0]
        ga0 = per_rank // mb0
        ladder = variants(fam, self.start, self.request.optimizer_changes)
        low = ckpt_levels(self.start)[0]
        tried = [c for c in (self.candidate(fam, v, low, mb0, ga0) for v in frugal_variants(ladder)) if c]
        if not tried:
            return None, None
        if not any(est.fits for _, est in tried):
            rejections = [rejection_of(scn, est, self.start) for scn, est in tried]
            return None, min(rejections, key=_closeness)
        for var in ladder:
            if self._fits(fam, var, low, mb0, ga0):
                return var, None
        return None, None  # unreachable: a frugal rung fits

    def search_family(self, fam: Family) -> Plan | Rejection | None:
        """Best plan of the family (shortest step time), or why it cannot fit."""
        var, rej = self.screen(fam)
        if var is None:
            return rej
        per_rank, exact, options = self.batch(fam)
        best: tuple[float, int, Plan] | None = None
        for ckpt in ckpt_levels(self.start):
            if not self._fits(fam, var, ckpt, options[0], per_rank // options[0]):
                continue
            lo, hi = 0, len(options) - 1
            if self._fits(fam, var, ckpt, options[hi], per_rank // options[hi]):
                lo = hi
            else:
                hi -= 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._fits(fam, var, ckpt, options[mid], per_rank // options[mid]):
                    lo = mid
                else:
                    hi = mid - 1
            timed = []
            for mb in options[: lo + 1]:
                scn = build_scenario(self.start, fam, var, ckpt, mb, per_rank // mb)
                timed.append((estimate_step_time(scn).total_s, -mb, mb))
            timed.sort()
            for _, _, mb in timed:
                cand = self.candidate(fam, var, ckpt, mb, per_rank // mb)
                if cand is not None and cand[1].fits:
                    plan = self._plan(cand, fam, exact)
                    key = (plan.step_time.total_s, len(plan.changes))
                    if best is None or key < best[:2]:
                        best = (key[0], key[1], plan)
                    break
        return best[2] if best else None

    def _plan(self, cand: Candidate, fam: Family, exact: bool) -> Plan:
        scn, est = cand
        notes = list(fam.requirements(scn))
        if not exact:
            g = scn.train.micro_batch * scn.train.grad_accum * scn.dp_degree
            notes.append(f"global batch {self.global_batch} is not a multiple of the {scn.dp_degree} data-parallel "
                         f"ranks; nearest is {g}")
        offloads = Offload.NONE is not scn.parallel.offload_optimizer or scn.parallel.offload_param is not Offload.NONE
        if scn.cluster.host_ram_bytes is None and offloads:
            notes.append("host RAM not checked (pass --host-ram): this setup keeps optimizer states or params in "
                         "host memory; see the host column")
        return Plan(scenario=scn, estimate=est, step_time=estimate_step_time(scn),
                    changes=describe_changes(self.start, scn), notes=tuple(notes))

    # -- all families ---------------------------------------------------------------------------
    def families(self) -> list[Family]:
        """Families of the request, NVMe ones last."""
        methods = allowed_methods(self.start, self.request.methods)
        fams = enumerate_families(self.start, methods, self.request.model_parallel, self.request.nvme)
        return [f for f in fams if not f.uses_nvme] + [f for f in fams if f.uses_nvme]

    def run(self) -> tuple[list[Plan], list[Rejection], int]:
        """Search every family; returns plans (best first), rejections (closest first) and the family count."""
        plans: list[Plan] = []
        rejected: list[Rejection] = []
        host_limited: set[Family] = set()
        fams = self.families()
        searched = 0
        for fam in fams:
            if fam.uses_nvme and fam.cpu_counterpart() not in host_limited:
                continue
            searched += 1
            outcome = self.search_family(fam)
            if isinstance(outcome, Plan):
                plans.append(outcome)
            elif isinstance(outcome, Rejection):
                rejected.append(outcome)
                if outcome.kind == "host":
                    host_limited.add(fam)
        plans.sort(key=plan_rank_key)
        rejected.sort(key=_closeness)
        return plans, rejected, searched

    def first_fit(self) -> Plan | None:
        """Any plan at all, trying the most memory-frugal families first (for cluster sizing)."""
        fams = sorted(self.families(), key=_frugality)
        for fam in fams:
            if fam.uses_nvme:
                continue
            var, _ = self.screen(fam)
            if var is not None:
                outcome = self.search_family(fam)
                if isinstance(outcome, Plan):
                    return outcome
        return None


def needs_model_code(scn: Scenario) -> bool:
    """tp/pp/ep > 1: the setup needs model-code changes HF Trainer does not make (see ``space.py``)."""
    p = scn.parallel
    return p.tp > 1 or p.pp > 1 or p.ep > 1


def plan_rank_key(plan: Plan) -> tuple[int, float, int, int]:
    """Ranking: setups HF Trainer runs as they are first, then by step time, changes, headroom."""
    return (int(needs_model_code(plan.scenario)), plan.step_time.total_s, len(plan.changes), -plan.estimate.margin_bytes)


def _frugality(fam: Family) -> int:
    """Order for ``first_fit``: the families that usually need the least GPU memory first."""
    score = 0
    if fam.engine is Engine.DEEPSPEED and fam.zero == 3:
        score -= 10
    if fam.engine in (Engine.FSDP, Engine.FSDP2):
        score -= 6
    if fam.offload_param is not Offload.NONE:
        score -= 3
    if fam.offload_optimizer is not Offload.NONE:
        score -= 2
    if fam.tp > 1 or fam.pp > 1 or fam.ep > 1:
        score += 5
    return score


def planner_assumptions(start: Scenario, plans: list[Plan]) -> tuple[str, ...]:
    """Assumptions to print with the plans (step-time model and memory verdict)."""
    out: list[str] = [
        (f"fits = estimated nvidia-smi peak <= capacity minus headroom ({start.headroom_fraction:.0%}, "
        "at least 0.5 GiB) per GPU, and host RAM where known"),
        ("ranked by estimated step time (setups that need model-code changes for tp/pp/ep after those HF Trainer "
        "runs as they are); among equal times, fewer changes first"),
    ]
    if start.cluster.host_ram_bytes is None:
        out.append("host RAM unknown: offload plans are not checked against host RAM (pass --host-ram)")
    seen: set[str] = set()
    source = [p.step_time for p in plans[:5]] or [estimate_step_time(start)]
    for st in source:
        for a in st.assumptions:
            if a not in seen:
                seen.add(a)
                out.append(a)
    return tuple(out)


def search_plans(start: Scenario, request: PlanRequest | None = None) -> PlanResult:
    """Search the setups of ``start``'s model on its cluster; plans that fit, best first (module docstring)."""
    request = request or PlanRequest()
    searcher = Searcher(start, request)
    start_est = estimate_scenario(start)
    searcher.evaluated += 1
    plans, rejected, count = searcher.run()
    notes: list[str] = []
    if request.global_batch is None:
        notes.append(f"global batch {searcher.global_batch} taken from the starting scenario (set it with --global-batch)")
    top = plans[: request.top] if request.top else plans
    return PlanResult(
        start=start, start_estimate=start_est, request=request, global_batch=searcher.global_batch,
        plans=tuple(top), rejected=tuple(rejected), assumptions=planner_assumptions(start, plans),
        evaluated=searcher.evaluated, families=count, notes=tuple(notes),
    )
