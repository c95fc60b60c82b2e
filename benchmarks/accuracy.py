"""Accuracy benchmark: vramplan's analytical estimate against every published measurement we have.

Reads ``benchmarks/data/published_measurements.yaml`` (each entry: source, metric, measured GiB,
scenario) and reports, for every entry, the estimate of the same metric and the relative error —
misses included. Nothing is tuned to these cases; the docs quote this output.

    python benchmarks/accuracy.py            # table + summary
    python benchmarks/accuracy.py --json     # machine-readable rows
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramplan.adapters.hf_config import model_from_config
from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.core.errors import VramplanError
from vramplan.core.estimate import estimate_scenario
from vramplan.core.units import GiB

DATA = ROOT / "benchmarks" / "data" / "published_measurements.yaml"
DEFAULT_TOLERANCE = 0.25
"""Stated tolerance for an entry without its own: 25 % of the measured value."""

METRIC_ATTR = {
    "peak_allocated": "peak_allocated_bytes",
    "peak_reserved": "peak_reserved_bytes",
    "device_used": "device_used_bytes",
}


@dataclass
class Row:
    """One compared entry."""

    id: str
    metric: str
    measured_gib: float
    estimated_gib: float | None
    tolerance: float
    source: str
    error: str = ""

    @property
    def rel_error(self) -> float | None:
        """(estimate - measured) / measured."""
        if self.estimated_gib is None:
            return None
        return (self.estimated_gib - self.measured_gib) / self.measured_gib

    @property
    def within(self) -> bool:
        """Within the entry's stated tolerance."""
        r = self.rel_error
        return r is not None and abs(r) <= self.tolerance


def load_entries(path: Path = DATA) -> list[dict[str, Any]]:
    """The measurement entries."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, list)
    return data


def compare_entry(entry: dict[str, Any]) -> Row:
    """Estimate one entry's scenario and compare the metric it reports."""
    scenario = dict(entry["scenario"])
    tol = float(entry.get("tolerance", DEFAULT_TOLERANCE))
    row = Row(
        id=entry["id"], metric=entry["metric"], measured_gib=float(entry["measured_gib"]), estimated_gib=None,
        tolerance=tol, source=entry.get("source", ""),
    )
    try:
        model = None
        if "model_config" in scenario:
            model = model_from_config(dict(scenario.pop("model_config")), name=entry["id"])
            scenario.setdefault("model", entry["id"])
        scn = scenario_from_dict(scenario, model=model)
        est = estimate_scenario(scn)
        row.estimated_gib = getattr(est, METRIC_ATTR[row.metric]) / GiB
    except VramplanError as exc:
        row.error = str(exc)
    return row


def run(path: Path = DATA) -> list[Row]:
    """Compare every entry."""
    return [compare_entry(e) for e in load_entries(path)]


def summarize(rows: list[Row]) -> dict[str, Any]:
    """Median / p90 absolute relative error, bias, and how many are within their tolerance."""
    errs = [r.rel_error for r in rows if r.rel_error is not None]
    abs_errs = sorted(abs(e) for e in errs)
    p90 = abs_errs[min(len(abs_errs) - 1, int(0.9 * len(abs_errs)))] if abs_errs else None
    return {
        "entries": len(rows),
        "estimated": len(errs),
        "failed": [r.id for r in rows if r.error],
        "within_tolerance": sum(r.within for r in rows),
        "median_abs_rel_error": statistics.median(abs_errs) if abs_errs else None,
        "p90_abs_rel_error": p90,
        "median_signed_rel_error": statistics.median(errs) if errs else None,
        "underestimates": sum(1 for e in errs if e < 0),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = run()
    summary = summarize(rows)
    if args.json:
        print(json.dumps({"rows": [r.__dict__ | {"rel_error": r.rel_error} for r in rows], "summary": summary}, indent=2))
        return 0
    print(f"{'id':<52}{'metric':<16}{'measured':>9}{'estimate':>9}{'error':>8}  ok")
    for r in rows:
        est = f"{r.estimated_gib:9.2f}" if r.estimated_gib is not None else f"{'-':>9}"
        err = f"{100 * r.rel_error:+7.1f}%" if r.rel_error is not None else f"{'-':>8}"
        flag = "yes" if r.within else ("ERR " + r.error[:60] if r.error else "no")
        print(f"{r.id[:51]:<52}{r.metric:<16}{r.measured_gib:9.2f}{est}{err}  {flag}")
    s = summary
    print()
    print(
        f"{s['within_tolerance']}/{s['entries']} within their stated tolerance; "
        f"median |error| {100 * (s['median_abs_rel_error'] or 0):.1f}%, p90 {100 * (s['p90_abs_rel_error'] or 0):.1f}%, "
        f"median signed {100 * (s['median_signed_rel_error'] or 0):+.1f}%, {s['underestimates']} underestimates"
    )
    if s["failed"]:
        print("could not estimate: " + ", ".join(s["failed"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
