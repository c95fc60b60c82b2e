"""Calibration accuracy: vramplan's estimate against every saved GPU measurement, per metric.

Reads every ``calibration/*.jsonl`` line that ``benchmarks/gpu_calibration.py`` wrote with status
``ok``, re-estimates its scenario with the current vramplan and reports, per run and per metric
(allocated = ``max_memory_allocated``, reserved = ``max_memory_reserved``, device used = peak reserved
+ memory outside the allocator, as nvidia-smi shows it), the relative error (estimate - measured) /
measured; then the median and p95 of the absolute errors and the signed median per metric. Nothing
is tuned to these numbers. With no measurements it says so and exits 0.

    python benchmarks/calibration_accuracy.py                # table + summary
    python benchmarks/calibration_accuracy.py --json         # rows as JSON
    python benchmarks/calibration_accuracy.py --dir other/   # another folder
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramplan.api import estimate_from_dict  # noqa: E402
from vramplan.core.errors import VramplanError  # noqa: E402

METRICS = (
    ("allocated", "peak_allocated_bytes", "peak_allocated_bytes"),
    ("reserved", "peak_reserved_bytes", "peak_reserved_bytes"),
    ("device_used", "device_used_bytes", "device_used_bytes"),
)
"""(metric, measured key, Estimate attribute)."""


def _model_path(ref: str) -> str:
    path = ROOT / ref
    return str(path) if ref.startswith("benchmarks/") and path.exists() else ref


def load_measurements(folder: Path) -> list[dict[str, Any]]:
    """Every record of every ``*.jsonl`` in ``folder`` (all statuses)."""
    records = []
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise SystemExit(f"{path}:{number}: not a JSON line") from None
                rec["_file"] = path.name
                records.append(rec)
    return records


def compare_record(rec: dict[str, Any]) -> dict[str, Any]:
    """Estimate vs measured for one ``ok`` record."""
    scenario = json.loads(json.dumps(rec["scenario"]))
    scenario["model"] = _model_path(str(scenario["model"]))
    row: dict[str, Any] = {"run": rec["run"], "file": rec["_file"], "gpu": (rec.get("env") or {}).get("gpu_name")}
    try:
        est = estimate_from_dict(scenario)
    except VramplanError as exc:
        row["error"] = str(exc)
        return row
    for name, m_key, attr in METRICS:
        measured = (rec.get("measured") or {}).get(m_key)
        estimated = int(getattr(est, attr))
        row[name] = {"measured_bytes": measured, "estimated_bytes": estimated,
                     "error": None if not measured else (estimated - measured) / measured}
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median / p95 absolute error, signed median, and count per metric."""
    out: dict[str, Any] = {}
    for name, _, _ in METRICS:
        errs = [r[name]["error"] for r in rows if name in r and r[name]["error"] is not None]
        if not errs:
            continue
        absolute = sorted(abs(e) for e in errs)
        p95 = absolute[min(len(absolute) - 1, int(round(0.95 * (len(absolute) - 1))))]
        out[name] = {"runs": len(errs), "median_abs_error": statistics.median(absolute), "p95_abs_error": p95,
                     "median_signed_error": statistics.median(errs),
                     "under_estimates": sum(1 for e in errs if e < 0)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(ROOT / "calibration"), help="folder of calibration/*.jsonl")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    records = load_measurements(folder) if folder.is_dir() else []
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        skipped = len(records)
        print(f"no measurements yet in {folder}" + (f" ({skipped} runs recorded, none ok)" if skipped else "")
              + "; run benchmarks/gpu_calibration.py on a GPU machine")
        return 0
    rows = [compare_record(r) for r in ok]
    summary = summarize(rows)
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary}, indent=2))
        return 0
    print(f"{'run':<40} {'metric':<12} {'measured':>10} {'estimate':>10} {'error':>8}")
    for row in rows:
        if "error" in row and isinstance(row["error"], str):
            print(f"{row['run']:<40} estimate failed: {row['error']}")
            continue
        for name, _, _ in METRICS:
            cell = row[name]
            m = cell["measured_bytes"]
            err = cell["error"]
            print(f"{row['run']:<40} {name:<12} {'-' if m is None else f'{m / 2**30:.2f}':>10} "
                  f"{cell['estimated_bytes'] / 2**30:>10.2f} {'-' if err is None else f'{err:+.1%}':>8}")
    print()
    for name, s in summary.items():
        print(f"{name:<12} runs {s['runs']:>3}  median |error| {s['median_abs_error']:.1%}  p95 |error| "
              f"{s['p95_abs_error']:.1%}  median signed {s['median_signed_error']:+.1%}  under-estimates "
              f"{s['under_estimates']}")
    skipped = [r for r in records if r.get("status") != "ok"]
    if skipped:
        print(f"({len(skipped)} runs not ok: " + ", ".join(f"{r['run']} {r.get('status')}" for r in skipped) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
