"""``vramplan models``: the embedded model presets with total and active parameters."""

from __future__ import annotations

import argparse
import json

from ...registry import list_presets, load_preset
from ...report.units import params


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``models`` subcommand."""
    p = sub.add_parser("models", help="list the embedded model presets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List presets: id, kind, total and active parameters, Hub id."""
    rows = []
    for info in list_presets():
        spec = load_preset(info.id)
        kind = "moe" if spec.is_moe else "dense"
        if spec.is_vlm:
            kind = "vlm-" + kind
        rows.append(
            {
                "id": info.id,
                "name": info.display_name,
                "kind": kind,
                "total_params": spec.num_params,
                "active_params": spec.num_active_params,
                "hf_id": info.hf_id,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':<18}{'kind':<11}{'total':>9}{'active':>9}  hub id")
    for r in rows:
        print(f"{r['id']:<18}{r['kind']:<11}{params(r['total_params']):>9}{params(r['active_params']):>9}  {r['hf_id']}")
    return 0
