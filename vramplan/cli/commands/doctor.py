"""``vramplan doctor``: why an existing launch script + DeepSpeed config runs out of memory, and what to change."""

from __future__ import annotations

import argparse
import json
import sys

from ...doctor import run_doctor, write_fix_files
from ...report.doctor_json import doctor_to_dict
from ...report.doctor_text import render_doctor
from ..output import write_output
from ..visual_args import add_visual_arguments, write_doctor_visuals

EPILOG = """examples:
  vramplan doctor --script scripts/gemma/train/stage_1_2_full_gemma_v2b_336_hr_768.sh --gpus 4xrtx4090
  vramplan doctor --script finetune.sh --deepspeed zero3.json --gpus 6xrtx4090 --host-ram 256GB
  vramplan doctor --args "deepspeed train.py --deepspeed zero2.json --model_name_or_path lmsys/vicuna-7b-v1.5 ..." --gpus 8xa100-80g
  vramplan doctor --script finetune.sh --gpus 4xrtx4090 --fix-dir fixed/     corrected copies, originals untouched

--gpus NxTYPE is what the run gets per node (it overrides the script's --include/--num_gpus/hostfile count);
a bare TYPE takes the count from the script. Exit code: 0 the setup fits and has no error finding,
1 it does not fit or has an error finding, 2 bad input.
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``doctor`` subcommand."""
    p = sub.add_parser(
        "doctor", help="explain an OOM from a launch script + DeepSpeed config, and prescribe the fix",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--script", help="launch script (deepspeed / torchrun / accelerate launch / python)")
    src.add_argument("--args", dest="args_text", metavar="COMMAND", help="the launch command as one string instead of a file")
    p.add_argument("--deepspeed", help="DeepSpeed JSON (default: the one the script passes with --deepspeed)")
    p.add_argument("--gpus", help="GPUs per node, e.g. 4xrtx4090, 6x24GiB, or a bare type (count from the script)")
    p.add_argument("--nodes", type=int, help="nodes (default 1 when --gpus has a count, else from the script)")
    p.add_argument("--model", help="preset, config.json or Hub id (default: from --model_name_or_path)")
    p.add_argument("--host-ram", help="host RAM per node, e.g. 128GB (default: assumed 2x the node's GPU memory)")
    p.add_argument("--command", dest="command_index", type=int, help="which launcher command of the script (1-based; default: the last training one)")
    p.add_argument("--alternatives", action="store_true", default=None,
                   help="also show LoRA/QLoRA and other-hardware alternatives when a fix already fits")
    p.add_argument("--json", action="store_true", help="machine-readable output (bytes as integers)")
    p.add_argument("--output", "-o", help="write the report to this file instead of stdout")
    p.add_argument("--fix-dir", help="write a corrected DeepSpeed JSON and script here (the originals are never modified)")
    p.add_argument("--fix-choice", type=int, help="which listed option --fix-dir writes (default: the recommended one)")
    p.add_argument("--force", action="store_true", help="allow --fix-dir to be an existing non-empty folder")
    add_visual_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """parse -> diagnose -> render (-> write the corrected files)."""
    report = run_doctor(
        script=args.script, args=args.args_text, deepspeed=args.deepspeed, gpus=args.gpus, model=args.model,
        host_ram=args.host_ram, nodes=args.nodes, command=args.command_index, with_alternatives=args.alternatives,
    )
    written = []
    if args.output:
        from pathlib import Path

        from ...core.errors import VramplanError

        if not Path(args.output).parent.exists():
            raise VramplanError(f"--output {args.output}: directory {Path(args.output).parent} does not exist; create it first")
    write_doctor_visuals(args, report)
    if args.fix_dir:
        written = write_fix_files(report, args.fix_dir, choice=args.fix_choice, force=args.force)
    if args.json:
        data = doctor_to_dict(report)
        data["written"] = [str(p) for p in written]
        text = json.dumps(data, indent=2)
    else:
        text = render_doctor(report)
        if written:
            text += "\n\nWrote " + ", ".join(str(p) for p in written)
    write_output(text, args.output)
    if written and args.json:
        sys.stderr.write("wrote " + ", ".join(str(p) for p in written) + "\n")
    return 0 if report.fits and not report.errors else 1
