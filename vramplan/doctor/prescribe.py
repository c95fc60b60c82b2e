"""Prescriptions: candidate fixes, alone and in combinations of two or three, each run through the estimator.

Ranking (``Option.rank_key``): options that fit first (GPU memory, and host RAM as given or assumed);
then the least change (sum of the candidates' costs); then the largest saving. Combinations are only
searched when no single fix fits, pairs before triples, and a combination that contains a smaller
fitting one is skipped (it would only add change). Pure: the estimator is the only thing called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import combinations

from ..core.estimate import Estimate, estimate_scenario
from ..core.scenario import Scenario
from .candidates import Candidate, fix_candidates
from .types import Change, DoctorContext


@dataclass(frozen=True, slots=True)
class Option:
    """One evaluated fix or combination."""

    ids: tuple[str, ...]
    title: str
    cost: int
    scenario: Scenario
    estimate: Estimate
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = ()
    saved_bytes: int = 0
    """Device bytes at the peak saved against the user's setup."""
    kind: str = "fix"
    """``fix`` (keeps method and hardware) or an alternative's kind (``lora``, ``qlora``, ``more_gpus``, ``bigger_gpus``)."""
    hardware: str = ""
    """``6x NVIDIA GeForce RTX 4090`` for hardware alternatives."""

    @property
    def fits(self) -> bool:
        """Fits on the GPU and in host RAM."""
        return self.estimate.fits

    @property
    def peak_bytes(self) -> int:
        """Predicted device use per GPU at the peak (nvidia-smi)."""
        return self.estimate.device_used_bytes

    def rank_key(self) -> tuple[int, int, int]:
        """Sort key: fits first, least change, most saved."""
        return (0 if self.fits else 1, self.cost, -self.saved_bytes)


@dataclass(frozen=True, slots=True)
class Prescription:
    """Ranked fixes for one context."""

    singles: tuple[Option, ...]
    """Every applicable single fix, ranked."""
    combos: tuple[Option, ...] = ()
    """Fitting combinations (or the closest ones when none fits), ranked."""
    searched: int = 0
    """Scenarios evaluated."""

    @property
    def ranked(self) -> tuple[Option, ...]:
        """Singles and combinations together, best first."""
        return tuple(sorted((*self.singles, *self.combos), key=Option.rank_key))

    @property
    def best(self) -> Option | None:
        """The top-ranked option that fits, if any."""
        return next((o for o in self.ranked if o.fits), None)

    @property
    def any_fits(self) -> bool:
        return self.best is not None


@dataclass
class Evaluator:
    """Applies candidate sets to a base scenario and caches the estimates."""

    base: Scenario
    base_estimate: Estimate
    candidates: list[Candidate]
    cache: dict[tuple[str, ...], Option | None] = field(default_factory=dict)
    kind: str = "fix"
    extra_changes: tuple[Change, ...] = ()
    extra_title: str = ""
    extra_cost: int = 0

    def evaluate(self, cands: Iterable[Candidate]) -> Option | None:
        """The option for this set (None when a candidate does not apply after the others)."""
        chosen = sorted(cands, key=lambda c: c.order)
        key = tuple(c.id for c in chosen)
        if key in self.cache:
            return self.cache[key]
        groups = [c.group for c in chosen if c.group]
        if len(groups) != len(set(groups)):
            self.cache[key] = None
            return None
        scn = self.base
        for c in chosen:
            if not c.applies(scn):
                self.cache[key] = None
                return None
            scn = c.apply(scn)
        est = estimate_scenario(scn)
        titles = [self.extra_title] if self.extra_title else []
        option = Option(
            ids=key, title=" + ".join(titles + [c.title for c in chosen]) or "as configured",
            cost=self.extra_cost + sum(c.cost for c in chosen), scenario=scn, estimate=est,
            changes=self.extra_changes + tuple(ch for c in chosen for ch in c.changes),
            notes=tuple(c.note for c in chosen if c.note),
            saved_bytes=self.base_estimate.device_used_bytes - est.device_used_bytes, kind=self.kind,
        )
        self.cache[key] = option
        return option


def _signature(option: Option) -> tuple[str, ...]:
    """The option's fixes without its micro-batch variant (variants of one signature compete)."""
    return tuple(i for i in option.ids if not i.startswith("micro_batch_"))


def _one_per_signature(options: list[Option], key: Callable[[Option], object]) -> list[Option]:
    best: dict[tuple[str, ...], Option] = {}
    for option in options:
        sig = _signature(option)
        if sig not in best or key(option) < key(best[sig]):  # type: ignore[operator]
            best[sig] = option
    return list(best.values())


def search(ev: Evaluator, max_combo: int = 3, keep: int = 5) -> tuple[list[Option], list[Option]]:
    """(single options, combination options) for the evaluator's candidates (module docstring).

    Among combinations that differ only in the micro-batch, the fitting one with the largest micro-batch
    (least change) is kept, or, when none fits, the one with the lowest peak.
    """
    singles = [o for o in (ev.evaluate([c]) for c in ev.candidates) if o is not None]
    singles.sort(key=Option.rank_key)
    if any(o.fits for o in singles):
        return singles, []
    fitting: list[Option] = []
    tried: list[Option] = []
    for size in range(2, max_combo + 1):
        for combo in combinations(ev.candidates, size):
            ids = {c.id for c in combo}
            if any(set(f.ids) <= ids for f in fitting):
                continue
            option = ev.evaluate(combo)
            if option is None:
                continue
            (fitting if option.fits else tried).append(option)
        if fitting:
            break
    if fitting:
        return singles, sorted(_one_per_signature(fitting, Option.rank_key), key=Option.rank_key)[:keep]
    closest = _one_per_signature(tried, lambda o: o.peak_bytes)
    return singles, sorted(closest, key=lambda o: o.peak_bytes)[: max(1, keep // 2 + 1)]


def prescribe(ctx: DoctorContext, max_combo: int = 3) -> Prescription:
    """Ranked fixes that keep full fine-tuning on the user's hardware."""
    ev = Evaluator(ctx.scenario, ctx.estimate, fix_candidates(ctx))
    singles, combos = search(ev, max_combo=max_combo)
    return Prescription(singles=tuple(singles), combos=tuple(combos), searched=sum(v is not None for v in ev.cache.values()))
