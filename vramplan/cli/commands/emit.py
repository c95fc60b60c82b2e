"""``vramplan emit``: write ds_config.json / accelerate config, launch.sh and scenario.yaml for a scenario or a plan."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ...adapters.emit_bundle import render_bundle, write_bundle
from ...adapters.scenario_file import read_structured_file, scenario_from_dict
from ...api import model_path_for
from ...core.errors import ScenarioError, VramplanError
from ...core.estimate import estimate_scenario
from ...core.steptime import estimate_step_time
from ...report.plan_text import emit_header
from ...report.units import gib
from ..scenario_args import add_scenario_arguments, scenario_dict_from_args

EPILOG = """examples:
  vramplan emit my_scenario.yaml --out run/                 files for a scenario file
  vramplan emit mgm-2b-stage2 --zero 3 --micro-batch 1 --out run/
  vramplan plan mgm-2b --gpus 4xrtx4090 --json > plans.json && vramplan emit plans.json --rank 2 --out run/
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``emit`` subcommand."""
    p = sub.add_parser(
        "emit", help="write DeepSpeed / accelerate configs and a launch script for a scenario or plan",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scenario_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write into (created if missing)")
    p.add_argument("--force", action="store_true", help="overwrite files that already exist")
    p.add_argument("--rank", type=int, default=1, help="which plan of a 'vramplan plan --json' file (default 1)")
    p.set_defaults(run=run)


def _plan_file_scenario(path: str, rank: int) -> dict[str, Any] | None:
    """The scenario dict of plan ``rank`` when ``path`` is a ``vramplan plan --json`` output, else None."""
    p = Path(path)
    if not (p.is_file() and p.suffix.lower() == ".json"):
        return None
    data = read_structured_file(p)
    if not isinstance(data, dict) or "plans" not in data:
        return None
    plans = data.get("plans") or []
    if not plans:
        raise VramplanError(f"{p}: the plan file has no plans (nothing fitted); nothing to emit")
    if not 1 <= rank <= len(plans):
        raise ScenarioError("--rank", rank, f"the plan file has {len(plans)} plan(s)", f"use 1..{len(plans)}")
    scenario = plans[rank - 1].get("scenario")
    if not isinstance(scenario, dict):
        raise VramplanError(f"{p}: plans[{rank - 1}] has no 'scenario' mapping; was it written by 'vramplan plan --json'?")
    return scenario


def run(args: argparse.Namespace) -> int:
    """scenario (file, plan JSON or flags) -> rendered files -> written only when all rendered."""
    data = _plan_file_scenario(args.target, args.rank) if args.target else None
    if data is not None:
        model_ref = str(data.get("model"))
        scn = scenario_from_dict(data)
    else:
        data, model_ref = scenario_dict_from_args(args)
        scn = scenario_from_dict(data)
    est = estimate_scenario(scn)
    files = render_bundle(scn, model_ref, model_path_for(model_ref), header=emit_header(est, estimate_step_time(scn)),
                          out_dir=args.out)
    written = write_bundle(files, args.out, force=args.force)
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    if not est.fits:
        sys.stderr.write("vramplan: warning: this scenario does not fit according to the estimate "
                         f"({gib(est.device_used_bytes)} per GPU); see 'vramplan plan'\n")
    return 0
