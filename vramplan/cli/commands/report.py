"""``vramplan report RUN_DIR``: the memory timeline (PNG) and summary of a monitored run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...core.errors import VramplanError

EPILOG = """examples:
  vramplan report runs/exp1                 summary + runs/exp1/memory_timeline.png
  vramplan report runs/exp1 -o t.png        the PNG elsewhere
  vramplan report runs/exp1 --no-plot       text only (no matplotlib needed)
  vramplan report runs/exp1 --json          machine-readable (bytes as integers)
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``report`` subcommand."""
    p = sub.add_parser(
        "report", help="memory timeline and leak verdict of a run recorded by MemoryMonitor", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder holding memory_rank*.jsonl")
    p.add_argument("--output", "-o", help="PNG path (default RUN_DIR/memory_timeline.png)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    p.add_argument("--force", action="store_true", help="replace an existing PNG")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """load -> summarise -> render; the PNG is written only once rendered."""
    from ...monitor.report import load_run, render_png, render_text, run_report

    runs = load_run(args.run_dir)
    reports = [run_report(r) for r in runs]
    png_path: Path | None = None
    png: bytes | None = None
    if not args.no_plot:
        png_path = Path(args.output) if args.output else Path(args.run_dir) / "memory_timeline.png"
        if png_path.exists() and not args.force:
            raise VramplanError(f"{png_path} already exists; pass --force to replace it or -o another path")
        if not png_path.parent.is_dir():
            raise VramplanError(f"--output {png_path}: directory {png_path.parent} does not exist; create it first")
        png = render_png(runs, reports)
    if args.json:
        sys.stdout.write(json.dumps({"ranks": reports, "png": str(png_path) if png_path else None}, indent=2) + "\n")
    else:
        sys.stdout.write(render_text(reports) + "\n")
    if png is not None and png_path is not None:
        png_path.write_bytes(png)
        sys.stderr.write(f"wrote {png_path}\n")
    return 0
