"""Calibration accuracy: vramplan's estimate against every saved GPU measurement, per metric.

Reads every ``calibration/*.jsonl`` line that ``benchmarks/gpu_calibration.py`` wrote with status
``ok``, re-estimates its scenario with the current vramplan and reports, per run and per metric
(allocated = ``max_memory_allocated``, reserved = ``max_memory_reserved``, device used = peak reserved
+ memory outside the allocator, as nvidia-smi shows it), the relative error (estimate - measured) /
measured; then the median and p95 of the absolute errors and the signed median per metric. Nothing
is tuned to these numbers. With no measurements it says so and exits 0.

Records of ``gpu_calibration.py --rehearse`` (marked ``"rehearsal"``: the CPU, a shrunk model) are
not measurements: they are counted and named, never compared nor summarized. A file cut short (a
run killed mid-write, a ``.jsonl.partial`` left by a SIGKILL) is read up to its last full line.

    python benchmarks/calibration_accuracy.py                # table + summary
    python benchmarks/calibration_accuracy.py --json         # rows as JSON
    python benchmarks/calibration_accuracy.py --dir other/   # another folder
    python benchmarks/calibration_accuracy.py --file run.jsonl [--file more.jsonl]   # given files only
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


def is_rehearsal(rec: dict[str, Any]) -> bool:
    """Whether ``rec`` comes from ``gpu_calibration.py --rehearse`` (CPU, shrunk model: not a measurement)."""
    return bool(rec.get("rehearsal")) or (rec.get("env") or {}).get("device") == "cpu"


def load_file(path: Path) -> list[dict[str, Any]]:
    """The records of one JSONL file; a last line cut short is dropped with a note, a bad line elsewhere stops."""
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                print(f"note: {path}:{number}: last line cut short (run killed while writing?); ignored",
                      file=sys.stderr)
                continue
            raise SystemExit(f"{path}:{number}: not a JSON line") from None
        if not isinstance(rec, dict) or "run" not in rec:
            raise SystemExit(f"{path}:{number}: not a gpu_calibration record (no 'run')")
        rec["_file"] = path.name
        records.append(rec)
    return records


def load_measurements(folder: Path) -> list[dict[str, Any]]:
    """Every record of every ``*.jsonl`` (and ``*.jsonl.partial``) in ``folder`` (all statuses)."""
    records = []
    for path in sorted([*folder.glob("*.jsonl"), *folder.glob("*.jsonl.partial")]):
        records.extend(load_file(path))
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
    parser.add_argument("--file", action="append", default=[], help="read this JSONL file (repeatable) instead of --dir")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.file:
        missing = [f for f in args.file if not Path(f).is_file()]
        if missing:
            print(f"calibration_accuracy: no such file: {', '.join(missing)}", file=sys.stderr)
            return 2
        where = ", ".join(args.file)
        records = [rec for f in args.file for rec in load_file(Path(f))]
    else:
        folder = Path(args.dir)
        where = str(folder)
        records = load_measurements(folder) if folder.is_dir() else []
    rehearsals = [r for r in records if is_rehearsal(r)]
    records = [r for r in records if not is_rehearsal(r)]
    if rehearsals:
        statuses: dict[str, int] = {}
        for r in rehearsals:
            statuses[str(r.get("status"))] = statuses.get(str(r.get("status")), 0) + 1
        print(f"{len(rehearsals)} CPU rehearsal record(s) ignored: code-path checks on a shrunk model, not GPU "
              "measurements (" + ", ".join(f"{n} {k}" for k, n in sorted(statuses.items())) + ")",
              file=sys.stderr if args.json else sys.stdout)
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        skipped = len(records)
        if args.json:
            print(json.dumps({"rows": [], "summary": {}, "rehearsal_records": len(rehearsals),
                              "not_ok": [{"run": r["run"], "status": r.get("status")} for r in records]}, indent=2))
            return 0
        print(f"no measurements yet in {where}" + (f" ({skipped} runs recorded, none ok)" if skipped else "")
              + "; run benchmarks/gpu_calibration.py on a GPU machine")
        return 0
    rows = [compare_record(r) for r in ok]
    summary = summarize(rows)
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary, "rehearsal_records": len(rehearsals),
                          "not_ok": [{"run": r["run"], "status": r.get("status")} for r in records
                                     if r.get("status") != "ok"]}, indent=2))
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
