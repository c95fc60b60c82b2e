"""Speed of the analytical estimator: one estimate, and 10,000 scenarios.

    python benchmarks/bench_estimate.py

Scenarios are built once (model presets parsed once); the timed part is ``estimate_scenario``.
"""

from __future__ import annotations

import itertools
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.core.estimate import estimate_scenario
from vramplan.core.scenario import Engine, GradCkpt
from vramplan.registry.scenario_presets import builtin_scenario


def _base(name: str):
    data = builtin_scenario(name)
    data.pop("name"), data.pop("description")
    return scenario_from_dict(data)


def time_one(repeats: int = 200) -> dict[str, float]:
    """Median wall time of one estimate of each built-in MGM scenario."""
    out = {}
    for name in ("mgm-2b-stage2", "mgm-8x7b-stage2"):
        scn = _base(name)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            estimate_scenario(scn)
            samples.append(time.perf_counter() - t0)
        out[name] = statistics.median(samples)
    return out


def sweep(count: int = 10_000, seed: int = 0) -> tuple[float, int]:
    """Wall time of ``count`` estimates over random variations of the MGM-2B and MGM-8x7B scenarios."""
    rng = random.Random(seed)
    bases = [_base("mgm-2b-stage2"), _base("mgm-8x7b-stage2")]
    combos = list(itertools.product([0, 1, 2, 3], ["none", "cpu"], [1, 2, 4, 8], [1024, 2048, 4096], list(GradCkpt)))
    scenarios = []
    for _ in range(count):
        base = rng.choice(bases)
        zero, offload, mb, seq, ckpt = rng.choice(combos)
        par = replace(base.parallel, engine=Engine.DEEPSPEED, zero=zero, offload_optimizer=base.parallel.offload_optimizer.parse("o", offload))
        train = replace(base.train, micro_batch=mb, seq_len=seq, grad_ckpt=ckpt)
        scenarios.append(replace(base, parallel=par, train=train))
    t0 = time.perf_counter()
    fits = sum(estimate_scenario(s).fits for s in scenarios)
    return time.perf_counter() - t0, fits


def main() -> int:
    one = time_one()
    for name, seconds in one.items():
        print(f"one estimate, {name}: {seconds * 1e3:.2f} ms (median of 200)")
    total, fits = sweep()
    print(f"10,000 scenarios: {total:.2f} s ({total / 10_000 * 1e3:.3f} ms each), {fits} fit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
