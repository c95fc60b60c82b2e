"""``vramplan calibrate MODEL``: trace one or two decoder layers, store the per-token activation profile."""

from __future__ import annotations

import argparse
import json

from ..output import write_output
from ..scenario_args import add_scenario_arguments, scenario_dict_from_args

EPILOG = """examples:
  vramplan calibrate path/to/config.json                   bf16-mixed, flash, full, micro-batch 1, seq 2048
  vramplan calibrate mixtral-8x7b --precision bf16-pure --seq-len 4096
  vramplan calibrate my-model --attention sdpa --profile-dir ./profiles --json

The profile is stored per (model, precision, attention, method) under --profile-dir, else
$VRAMPLAN_PROFILE_DIR, else ~/.cache/vramplan/profiles; estimate, plan and doctor then use it for that
model and those settings in place of the activation formulas (their notes say so). Needs
pip install "vramplan[torch]".
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``calibrate`` subcommand."""
    p = sub.add_parser("calibrate", help="trace 1-2 layers of a model and store its activation profile",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scenario_arguments(p)
    p.add_argument("--layers", type=int, choices=[1, 2], default=2,
                   help="trace 2 layers (saved and backward bytes measured) or 1 (backward only; saved from the formula)")
    p.add_argument("--profile-dir", help="where profiles are stored (default $VRAMPLAN_PROFILE_DIR or "
                                         "~/.cache/vramplan/profiles)")
    p.add_argument("--dry-run", action="store_true", help="measure and print, do not store")
    p.add_argument("--json", action="store_true", help="machine-readable output (bytes as integers)")
    p.add_argument("--output", "-o", help="write the report to this file instead of stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """parse -> trace -> store -> render."""
    from ...adapters.profile_file import save_profile
    from ...tracing import calibrate_from_dict

    data, _model_ref = scenario_dict_from_args(args)
    cal = calibrate_from_dict(data, layers=args.layers)
    prof = cal.profile
    import torch
    import transformers

    extra = {"torch": torch.__version__, "transformers": transformers.__version__, "traced_layers": cal.traced_layers,
             "micro_batch": data["train"].get("micro_batch"), "seq_len": data["train"].get("seq_len")}
    path = None if args.dry_run else save_profile(prof, extra, args.profile_dir)
    rows = {"dense": (prof.dense_saved_per_token, prof.dense_backward_per_token),
            "moe": (prof.moe_saved_per_token, prof.moe_backward_per_token)}
    if args.json:
        out = {"model": prof.model, "settings": prof.settings, "stored_at": str(path) if path else None,
               "wall_seconds": round(cal.wall_seconds, 2),
               "layers": {k: {"saved_per_token": v[0], "backward_per_token": v[1],
                              "formula_saved_per_token": cal.formula[k][0],
                              "formula_backward_per_token": cal.formula[k][1]}
                          for k, v in rows.items() if k in cal.formula}}
        text = json.dumps(out, indent=2)
    else:
        lines = [(f"vramplan calibrate: {prof.model} ({prof.settings}), {cal.traced_layers} traced layer(s), "
                  f"{cal.wall_seconds:.1f} s"), "",
                 f"  {'layer kind':<10} {'saved B/token':>14} {'formula':>10} {'backward B/token':>17} {'formula':>10}"]
        for kind, (saved, back) in rows.items():
            if kind in cal.formula:
                f_saved, f_back = cal.formula[kind]
                lines.append(f"  {kind:<10} {saved:>14,} {f_saved:>10,} {back:>17,} {f_back:>10,}")
        lines.append("")
        lines.append(f"stored: {path}" if path else "not stored (--dry-run)")
        text = "\n".join(lines)
    write_output(text, args.output)
    return 0
