"""Speed of the planner: the full search for the MGM cases of issue #75.

    python benchmarks/bench_plan.py [--repeats 10]

Scenarios are built once (model presets parsed once); the timed part is ``search_plans`` (every
family, every memory saver, micro-batch and checkpointing level the search visits) and, where
nothing fits, ``nearest_options`` as ``vramplan plan`` runs it (host RAM, LoRA/QLoRA, cluster sizing on
the same GPU and on A100/H100). "first" is the first run in the process (cold caches), "best" the
fastest of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.core.planner import PlanRequest, PlanResult, nearest_options, search_plans
from vramplan.core.scenario import Method, Scenario
from vramplan.registry import load_gpu
from vramplan.registry.scenario_presets import builtin_scenario


def _builtin(name: str) -> Scenario:
    data = builtin_scenario(name)
    data.pop("name", None)
    data.pop("description", None)
    return scenario_from_dict(data)


def _timed(fn: Callable[[], object], repeats: int) -> tuple[object, float, float, float]:
    """(first result, first, best, median wall seconds)."""
    samples = []
    first = None
    for i in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - t0)
        if i == 0:
            first = out
    return first, samples[0], min(samples), statistics.median(samples)


def cases() -> list[tuple[str, Scenario, PlanRequest, bool]]:
    """(label, start, request, with nearest options)."""
    mgm8x7b = _builtin("mgm-8x7b-stage2")
    mgm2b = _builtin("mgm-2b-stage2")
    preset2b = scenario_from_dict({"model": "mgm-2b", "hardware": {"gpu": "rtx4090", "gpus_per_node": 4},
                                   "parallel": {"engine": "deepspeed"}})
    return [
        ("MGM-8x7B, 6x RTX 4090, full, 256 GB host", mgm8x7b, PlanRequest(methods=(Method.FULL,)), False),
        ("  + nearest options (as `vramplan plan`)", mgm8x7b, PlanRequest(methods=(Method.FULL,)), True),
        ("MGM-8x7B, 6x RTX 4090, full+LoRA+QLoRA", mgm8x7b,
         PlanRequest(methods=(Method.FULL, Method.LORA, Method.QLORA)), False),
        ("MGM-8x7B, 6x RTX 4090, no host RAM limit", replace(mgm8x7b, cluster=replace(mgm8x7b.cluster, host_ram_bytes=None)),
         PlanRequest(), False),
        ("MGM-2B stage 2, 4x RTX 4090, global 64", mgm2b, PlanRequest(), False),
        ("MGM-2B preset, 4x RTX 4090, global 128", preset2b, PlanRequest(global_batch=128), False),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    alternatives = [load_gpu("a100-80g"), load_gpu("h100-80g")]
    print(f"{'case':<44}{'families':>9}{'estimates':>10}{'plans':>6}{'first s':>9}{'best s':>8}{'median s':>9}")
    for label, start, request, with_nearest in cases():

        def run(start: Scenario = start, request: PlanRequest = request, with_nearest: bool = with_nearest) -> PlanResult:
            res = search_plans(start, request)
            if with_nearest:
                nearest_options(start, request, res, alternatives)
            return res

        result, first, best, median = _timed(run, args.repeats)
        assert isinstance(result, PlanResult)
        print(f"{label:<44}{result.families:>9}{result.evaluated:>10}{len(result.plans):>6}"
              f"{first:>9.3f}{best:>8.3f}{median:>9.3f}")


if __name__ == "__main__":
    main()
