"""Cross-validation table: the analytical estimate against the trace on the cases of tests/torch/crossval_cases.py.

Run: ``python3 benchmarks/crossval.py [--markdown] [NAME_FILTER ...]``. Prints, per case and phase, the
analytic and traced allocated bytes (everything but cuBLAS workspaces) and the errors defined in
``vramplan.tracing.compare``; then the median and worst |error| per phase and per component.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "torch"))

from crossval_cases import CASES, TOWERS

from vramplan.adapters.hf_config import model_from_config
from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.tracing.compare import COMPONENTS, Comparison, compare_scenario

MiB = 2**20


def run_case(name: str, config: dict, scen: dict) -> Comparison:
    """Trace and compare one case."""
    spec = model_from_config(config, name=name, resolve_tower=TOWERS.get)
    scn = scenario_from_dict(copy.deepcopy(scen), model=spec)
    return compare_scenario(scn, config, resolve_tower=TOWERS.get)


def summary(results: dict[str, Comparison]) -> dict[str, tuple[float, float]]:
    """(median |error|, worst |error|) per phase and per phase x component."""
    out: dict[str, tuple[float, float]] = {}
    for i, phase in enumerate(("forward", "backward", "optimizer")):
        errs = [abs(c.phases[i].error) for c in results.values()]
        out[phase] = (statistics.median(errs), max(errs))
        for comp in COMPONENTS:
            cerrs = [abs(c.phases[i].component_error(comp)) for c in results.values()]
            out[f"{phase}/{comp}"] = (statistics.median(cerrs), max(cerrs))
    return out


def main(argv: list[str]) -> int:
    markdown = "--markdown" in argv
    filters = [a for a in argv if not a.startswith("--")]
    results: dict[str, Comparison] = {}
    start = time.perf_counter()
    for name, config, scen in CASES:
        if filters and not any(f in name for f in filters):
            continue
        results[name] = run_case(name, config, scen)
    wall = time.perf_counter() - start
    if markdown:
        print("| case | forward MiB (analytic / traced, err) | backward | optimizer | worst component |")
        print("|---|---|---|---|---|")
    for name, c in results.items():
        cells = [f"{p.analytic_bytes / MiB:.1f} / {p.traced_bytes / MiB:.1f} ({100 * p.error:+.1f}%)" for p in c.phases]
        if markdown:
            print(f"| {name} | " + " | ".join(cells) + f" | {100 * c.worst:.1f}% |")
        else:
            print(f"{name:28s} {c.wall_seconds:5.1f}s  " + "  ".join(cells) + f"  worst {100 * c.worst:.1f}%")
    print()
    for key, (med, worst) in summary(results).items():
        print(f"{key:34s} median {100 * med:5.2f}%   worst {100 * worst:5.2f}%")
    print(f"\n{len(results)} cases in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
