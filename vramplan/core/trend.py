"""Robust trend statistics for leak detection: Theil–Sen slope, Mann–Kendall test, onset of growth.

Owns ``detect_growth``: does memory measured after each training step grow beyond noise? The test
is rank based and robust to outliers, so a loop whose post-step memory jitters with the sequence
length of the last batch raises no alarm, while a loop that keeps a few MiB per step does:

1. drop a warm-up (optimizer states appear at the first step, allocator caches fill);
2. Mann–Kendall: the one-sided p-value of "values increase with the step" (normal approximation
   with the tie correction, Kendall 1975) must be below ``alpha``;
3. Theil–Sen slope (median of pairwise slopes, Sen 1968) times the analysed span must exceed both
   ``min_growth_bytes`` and ``noise_factor`` x the robust residual scale (1.4826 x MAD);
4. persistence: the last half of the window must still increase (Mann–Kendall p < 0.05 and a
   positive Theil–Sen slope), so a cache that fills once and plateaus is not a leak.

The onset is the break point of a flat-then-linear ("hinge") fit with the least absolute deviation.

Pure standard library (``math``, ``statistics``); no IO, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median
from typing import Sequence

from .units import MiB

DEFAULT_MIN_GROWTH_BYTES = 8 * MiB
"""Smallest growth over the analysed window that counts as a leak (allocator rounding is 2 MiB)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GrowthVerdict:
    """Outcome of ``detect_growth`` on a post-step memory series."""

    leak: bool
    """True when memory grows beyond noise and keeps growing at the end of the window."""
    steps_analyzed: int
    """Steps after the warm-up that the test used."""
    warmup_steps: int
    slope_bytes_per_step: int
    """Theil–Sen slope of the analysed window (bytes per step, rounded)."""
    growth_bytes: int
    """Slope x span of the analysed window."""
    noise_bytes: int
    """Robust scale of the residuals around the trend (1.4826 x median absolute deviation)."""
    p_value: float
    """One-sided Mann–Kendall p-value of an increasing trend (1.0 when not computed)."""
    onset_step: int | None
    """Step at which the growth began (hinge fit), when a leak is reported."""
    reason: str
    """One sentence explaining the verdict."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict (bytes as int)."""
        return {
            "leak": self.leak,
            "steps_analyzed": self.steps_analyzed,
            "warmup_steps": self.warmup_steps,
            "slope_bytes_per_step": self.slope_bytes_per_step,
            "growth_bytes": self.growth_bytes,
            "noise_bytes": self.noise_bytes,
            "p_value": self.p_value,
            "onset_step": self.onset_step,
            "reason": self.reason,
        }


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept): the median of pairwise slopes and the median of ``y - slope * x``."""
    slopes = [
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(len(xs))
        for j in range(i + 1, len(xs))
        if xs[j] != xs[i]
    ]
    if not slopes:
        return 0.0, float(median(ys)) if ys else 0.0
    slope = float(median(slopes))
    intercept = float(median(y - slope * x for x, y in zip(xs, ys)))
    return slope, intercept


def mann_kendall(ys: Sequence[float]) -> tuple[int, float, float]:
    """(S, z, one-sided p of an increasing trend) with the variance corrected for ties."""
    n = len(ys)
    if n < 3:
        return 0, 0.0, 1.0
    s = 0
    for i in range(n - 1):
        yi = ys[i]
        for j in range(i + 1, n):
            d = ys[j] - yi
            s += (d > 0) - (d < 0)
    counts: dict[float, int] = {}
    for y in ys:
        counts[y] = counts.get(y, 0) + 1
    ties = sum(t * (t - 1) * (2 * t + 5) for t in counts.values() if t > 1)
    var = (n * (n - 1) * (2 * n + 5) - ties) / 18.0
    if var <= 0:
        return s, 0.0, 1.0
    z = (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var) if s < 0 else 0.0
    p = 0.5 * math.erfc(z / math.sqrt(2.0))
    return s, z, p


def downsample(xs: Sequence[float], ys: Sequence[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` (x, y) pairs: medians of consecutive equal-sized buckets."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(max_points):
        lo = b * n // max_points
        hi = (b + 1) * n // max_points
        out_x.append(float(median(xs[lo:hi])))
        out_y.append(float(median(ys[lo:hi])))
    return out_x, out_y


def growth_onset(xs: Sequence[float], ys: Sequence[float]) -> int:
    """Index where a flat-then-linear fit (least absolute deviation) breaks."""
    n = len(xs)
    if n < 3:
        return 0
    best_k, best_cost = 0, math.inf
    for k in range(n - 1):
        level = float(median(ys[: k + 1]))
        slopes = [(ys[i] - level) / (xs[i] - xs[k]) for i in range(k + 1, n) if xs[i] != xs[k]]
        slope = float(median(slopes)) if slopes else 0.0
        cost = sum(abs(y - level) for y in ys[: k + 1])
        cost += sum(abs(ys[i] - level - slope * (xs[i] - xs[k])) for i in range(k + 1, n))
        if cost < best_cost - 1e-9:
            best_k, best_cost = k, cost
    return best_k


def detect_growth(
    steps: Sequence[int],
    values: Sequence[int],
    *,
    warmup: int | None = None,
    alpha: float = 0.01,
    min_growth_bytes: int = DEFAULT_MIN_GROWTH_BYTES,
    noise_factor: float = 4.0,
    min_steps: int = 12,
    max_points: int = 300,
) -> GrowthVerdict:
    """Whether ``values`` (bytes after each step) grow beyond noise; see the module docstring."""
    if len(steps) != len(values):
        raise ValueError(f"steps ({len(steps)}) and values ({len(values)}) differ in length")
    n_total = len(values)
    skip = max(3, n_total // 10) if warmup is None else max(0, warmup)
    skip = min(skip, n_total)
    xs_all = [float(s) for s in steps[skip:]]
    ys_all = [float(v) for v in values[skip:]]
    n = len(ys_all)

    def verdict(leak: bool, reason: str, slope: float = 0.0, growth: float = 0.0, noise: float = 0.0,
                p: float = 1.0, onset: int | None = None) -> GrowthVerdict:
        return GrowthVerdict(
            leak=leak, steps_analyzed=n, warmup_steps=skip, slope_bytes_per_step=int(round(slope)),
            growth_bytes=int(round(growth)), noise_bytes=int(round(noise)), p_value=p, onset_step=onset,
            reason=reason,
        )

    if n < min_steps:
        return verdict(False, f"too few steps to judge: {n} after a warm-up of {skip} (need {min_steps})")
    xs, ys = downsample(xs_all, ys_all, max_points)
    _, _, p = mann_kendall(ys)
    slope, intercept = theil_sen(xs, ys)
    span = xs[-1] - xs[0]
    growth = slope * span
    noise = 1.4826 * float(median(abs(y - (intercept + slope * x)) for x, y in zip(xs, ys)))
    threshold = max(float(min_growth_bytes), noise_factor * noise)
    if p >= alpha:
        return verdict(False, f"no significant upward trend (Mann-Kendall p={p:.3g} >= {alpha})",
                       slope, growth, noise, p)
    if growth <= threshold:
        return verdict(False, f"upward trend of {growth:.0f} B over {span:.0f} steps stays within "
                       f"noise/threshold ({threshold:.0f} B)", slope, growth, noise, p)
    half = len(xs) // 2
    tail_x, tail_y = xs[half:], ys[half:]
    _, _, p_tail = mann_kendall(tail_y)
    tail_slope, _ = theil_sen(tail_x, tail_y)
    if p_tail >= 0.05 or tail_slope <= 0:
        return verdict(False, "memory grew early and then levelled off (no growth in the last half of the window)",
                       slope, growth, noise, p)
    onset = int(round(xs[growth_onset(xs, ys)]))
    return verdict(True, f"memory grows by about {slope:.0f} B per step from step {onset} "
                   f"(Mann-Kendall p={p:.2g}, {growth:.0f} B over {span:.0f} steps)", slope, growth, noise, p, onset)
