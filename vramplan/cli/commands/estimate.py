"""``vramplan estimate``: per-GPU peak memory of one setup, broken down by phase and component."""

from __future__ import annotations

import argparse
import json

from ...api import estimate_from_dict
from ...report.json_report import estimate_to_dict
from ...report.text import render_estimate
from ..output import write_output
from ..visual_args import add_visual_arguments, write_estimate_visuals
from ..scenario_args import add_scenario_arguments, scenario_dict_from_args

EPILOG = """examples:
  vramplan estimate mgm-2b-stage2                      built-in scenario (MGM issue #75 setup)
  vramplan estimate mgm-2b --gpus 4xrtx4090 --zero 3 --micro-batch 2
  vramplan estimate my_scenario.yaml --json
  vramplan estimate mgm-2b-stage2 --html report.html --png charts/
  vramplan estimate path/to/config.json --gpus 8xa100-80g --method lora --lora-r 16
  vramplan estimate mgm-2b-stage2 --estimator trace     trace the real model on fake tensors (vramplan[torch])

--estimator trace (also accepted as --method trace, since --method names the training method everywhere
else) builds the model with transformers under FakeTensorMode and runs two training steps; reserved and
nvidia-smi totals add the analytical allocator slack, CUDA context and NCCL buffers (docs/tracing.md).
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``estimate`` subcommand."""
    p = sub.add_parser(
        "estimate", help="per-GPU peak memory of one setup", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scenario_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output (bytes as integers)")
    p.add_argument("--output", "-o", help="write the report to this file instead of stdout")
    add_visual_arguments(p)
    p.add_argument("--estimator", choices=["analytic", "trace"], default="analytic",
                   help="analytic formulas (default) or trace: the real transformers model on fake tensors "
                        '(needs pip install "vramplan[torch]")')
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """parse -> estimate -> render."""
    estimator = args.estimator
    if args.method is not None and args.method.strip().lower() == "trace":
        estimator, args.method = "trace", None  # `--method trace`: the estimator, not a training method
    data, model_ref = scenario_dict_from_args(args)
    if estimator == "trace":
        from ...tracing import trace_estimate_from_dict

        est = trace_estimate_from_dict(data)
    else:
        est = estimate_from_dict(data)
    if args.json:
        text = json.dumps(estimate_to_dict(est, model_ref, method=estimator), indent=2)
    else:
        text = render_estimate(est, title="vramplan estimate (traced)" if estimator == "trace" else "vramplan estimate")
    write_estimate_visuals(args, est, model_ref)
    write_output(text, args.output)
    return 0
