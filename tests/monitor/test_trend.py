"""The trend test (vramplan.core.trend): leaks caught, noise and plateaus not, onset located."""

from __future__ import annotations

import random

from vramplan.core.trend import detect_growth, growth_onset, mann_kendall, theil_sen
from vramplan.core.units import MiB


def test_theil_sen_and_mann_kendall_basics() -> None:
    xs = list(range(10))
    ys = [3 * x + 7 for x in xs]
    ys[4] = 1000  # one outlier does not move the median slope
    slope, intercept = theil_sen(xs, ys)
    assert slope == 3 and intercept == 7
    s, _, p = mann_kendall(list(range(20)))
    assert s == 190 and p < 1e-6
    _, _, p_flat = mann_kendall([5] * 20)
    assert p_flat == 1.0


def test_linear_leak_is_caught_with_onset() -> None:
    steps = list(range(60))
    values = [1_000 * MiB + (2 * MiB * (s - 25) if s > 25 else 0) + random.Random(s).randint(0, 64 * 1024)
              for s in steps]
    v = detect_growth(steps, values)
    assert v.leak, v.reason
    assert 22 <= v.onset_step <= 28
    assert 1.5 * MiB < v.slope_bytes_per_step < 2.5 * MiB


def test_noise_without_trend_is_not_a_leak() -> None:
    rng = random.Random(7)
    steps = list(range(200))
    values = [500 * MiB + rng.randint(-20 * MiB, 20 * MiB) for _ in steps]
    assert not detect_growth(steps, values).leak


def test_plateau_after_growth_is_not_a_leak() -> None:
    steps = list(range(100))
    values = [100 * MiB + min(s, 30) * MiB for s in steps]  # a cache filling up, then flat
    assert not detect_growth(steps, values, warmup=0).leak
    steps = list(range(60))
    values = [100 * MiB + min(s, 25) * 8 * MiB for s in steps]  # bigger growth, still stops early
    v = detect_growth(steps, values, warmup=0)
    assert not v.leak, v.reason


def test_small_growth_below_threshold_and_too_few_steps() -> None:
    steps = list(range(50))
    assert not detect_growth(steps, [s * 1024 for s in steps]).leak  # 50 KiB in all: below 8 MiB
    v = detect_growth(list(range(8)), [s * MiB * 10 for s in range(8)])
    assert not v.leak and "too few" in v.reason


def test_growth_onset_of_hinge() -> None:
    xs = [float(x) for x in range(40)]
    ys = [0.0 if x < 15 else (x - 15) * 10.0 for x in xs]
    assert 13 <= growth_onset(xs, ys) <= 16


def test_long_series_is_downsampled_fast() -> None:
    import time

    steps = list(range(5000))
    values = [s * 4 * MiB for s in steps]
    t0 = time.perf_counter()
    assert detect_growth(steps, values).leak
    assert time.perf_counter() - t0 < 10.0
