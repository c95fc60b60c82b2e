"""``vramplan probe SCENARIO``: the largest micro-batch that really fits on the local GPU(s), vs the estimate."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ...core.errors import VramplanError
from ..scenario_args import add_scenario_arguments, scenario_dict_from_args

EPILOG = """examples:
  vramplan probe my_scenario.yaml                  one GPU: search the largest micro-batch
  vramplan probe llama-3.1-8b --gpus h200 --method lora --seq-len 4096
  torchrun --nproc-per-node 4 -m vramplan probe my_scenario.yaml     several GPUs (printed for you)
  vramplan probe my_scenario.yaml --json -o probe.json

Builds the model from its config.json with random weights (transformers from_config), runs real steps
on synthetic batches, grows the micro-batch until it runs out of memory and then bisects. Without a
CUDA GPU it says so and exits 0.
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``probe`` subcommand."""
    p = sub.add_parser("probe", help="largest micro-batch that fits on the local GPU(s), measured vs predicted",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scenario_arguments(p)
    p.add_argument("--steps", type=int, default=2, help="real steps per trial (default 2: the second is steady state)")
    p.add_argument("--max-micro-batch", type=int, default=1024, help="stop growing at this micro-batch (default 1024)")
    p.add_argument("--json", action="store_true", help="machine-readable output (bytes as integers)")
    p.add_argument("--output", "-o", help="also write the JSON report to this new file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """validate -> (no GPU: one line, exit 0) -> launch line or search -> report."""
    from ...api import load_scenario

    if args.steps < 1 or args.max_micro_batch < 1:
        raise VramplanError("--steps and --max-micro-batch must be at least 1")
    data, model_ref = scenario_dict_from_args(args)
    out_path = Path(args.output) if args.output else None
    if out_path is not None and out_path.exists():
        raise VramplanError(f"--output {out_path} already exists; choose a new file")
    scenario = load_scenario(data)  # bad input -> exit 2 before anything else
    try:
        from ...monitor.probe_torch import gpu_status
    except ImportError:
        sys.stdout.write('vramplan probe: torch is not installed, so there is no GPU to probe '
                         '(pip install "vramplan[torch]"); use `vramplan estimate` for the analytical answer\n')
        return 0
    reason = gpu_status()
    if reason is not None:
        sys.stdout.write(f"vramplan probe: {reason}; nothing to probe here (use `vramplan estimate` for the "
                         "analytical answer)\n")
        return 0
    world = scenario.cluster.world_size
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and launched == 1:
        from ...monitor.probe import launch_command

        argv = [a for a in (sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "probe" else [model_ref])]
        sys.stdout.write("vramplan probe: this scenario runs on "
                         f"{world} GPUs; launch one probe per GPU:\n  "
                         + launch_command(scenario.parallel.engine.value, scenario.cluster.gpus_per_node,
                                          scenario.cluster.nodes, argv) + "\n")
        return 0
    if world != launched:
        raise VramplanError(f"the scenario has {world} GPUs but the launcher started {launched} processes; "
                            "make hardware.gpus_per_node x nodes match the launch")
    from ...monitor.probe import probe_report, render_probe
    from ...monitor.probe_torch import run_probe
    from ...registry import load_config

    config = load_config(model_ref, image_size=scenario.train.image_size)
    quiet = args.json

    def log(msg: str) -> None:
        if not quiet:
            sys.stderr.write(f"probe: {msg}\n")

    search, device, notes, rank = run_probe(config, scenario, steps=args.steps, limit=args.max_micro_batch, log=log)
    if rank != 0:
        return 0
    local = dict(data)
    hardware = dict(local.get("hardware") or {})
    if device.get("capacity_bytes"):
        # hold the run against the GPU it ran on
        hardware["gpu"] = f"{device['capacity_bytes'] / 2**30:.3f}GiB"
        local["hardware"] = hardware
    report = probe_report(local, search, device, limit=args.max_micro_batch, notes=notes)
    text = json.dumps(report, indent=2) if args.json else render_probe(report)
    sys.stdout.write(text + "\n")
    if out_path is not None:
        out_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        sys.stderr.write(f"wrote {out_path}\n")
    return 0
