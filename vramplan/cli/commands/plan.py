"""``vramplan plan``: the setups that fit, fastest first; cluster sizing; nearest options when nothing fits."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace

from ...adapters.emit_bundle import render_bundle, write_bundle
from ...adapters.scenario_file import scenario_from_dict
from ...api import DEFAULT_ALTERNATIVE_GPUS, model_path_for, nearest_options, size_cluster
from ...core.errors import ScenarioError, VramplanError
from ...core.model import Part
from ...core.planner import PlanRequest, search_plans
from ...core.planner.search import start_global_batch
from ...core.scenario import Method, Scenario
from ...report.plan_json import plan_result_to_dict, sizing_result_to_dict
from ...report.plan_text import emit_header, render_plan_result, render_sizing_table
from ..scenario_args import add_scenario_arguments, scenario_dict_from_args
from ..visual_args import add_visual_arguments, write_plan_visuals, write_sizing_visuals

EPILOG = """examples:
  vramplan plan mgm-2b --gpus 4xrtx4090                    what fits MGM-2B stage 2 on 4x RTX 4090
  vramplan plan mgm-2b-stage2 --global-batch 128           start from the MGM issue #75 setup
  vramplan plan mgm-8x7b --gpus 6xrtx4090 --method full --host-ram 256GB
  vramplan plan mgm-8x7b --gpus 6xrtx4090 --method any     also LoRA / QLoRA (marked as a change of method)
  vramplan plan mgm-8x7b --gpu-type rtx4090                smallest number of RTX 4090s per method
  vramplan plan mgm-8x7b --compare rtx4090,a100-80g,h100-80g --method any
  vramplan plan mgm-2b --gpus 4xrtx4090 --emit out/        write ds_config.json + launch.sh for the top plan
"""

_COUNTED = re.compile(r"^\s*\d+\s*[x×*]", re.IGNORECASE)
METHOD_CHOICES = {"full": (Method.FULL,), "lora": (Method.LORA,), "qlora": (Method.QLORA,),
                  "any": (Method.FULL, Method.LORA, Method.QLORA), "freeze": (Method.FREEZE,)}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``plan`` subcommand."""
    p = sub.add_parser(
        "plan", help="search the setups that fit, rank them by step time, size the cluster", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scenario_arguments(p)
    g = p.add_argument_group("plan")
    g.add_argument("--global-batch", type=int, help="samples per optimizer step over all GPUs (default: the scenario's)")
    g.add_argument("--stage", choices=["pretrain", "finetune"],
                   help="VLMs: pretrain = projector only (LLaVA/MGM stage 1), finetune = LLM + projector (stage 2)")
    g.add_argument("--top", type=int, default=5, help="plans to show (default 5)")
    g.add_argument("--gpu-type", help="size the cluster: smallest count of this GPU that fits, per method")
    g.add_argument("--compare", help="comma list of GPU types: GPUs needed per type and method")
    g.add_argument("--max-gpus", type=int, default=256, help="largest cluster sizing tries (default 256)")
    g.add_argument("--no-model-parallel", action="store_true", help="only HF Trainer setups (no tp/pp/ep)")
    g.add_argument("--nvme", action="store_true",
                   help="also search ZeRO-Infinity NVMe offload (needs a fast local SSD of ~16 B per parameter)")
    g.add_argument("--keep-optimizer", action="store_true",
                   help="do not propose 8-bit AdamW, Adafactor or pure bf16 (keep the starting optimizer and precision)")
    g.add_argument("--json", action="store_true", help="machine-readable output (bytes as integers)")
    g.add_argument("--verify", type=int, metavar="N",
                   help='re-check the top N plans by trace and show both numbers (pip install "vramplan[torch]")')
    g.add_argument("--emit", metavar="DIR", help="write ds_config.json / accelerate config + launch.sh of the top plan")
    g.add_argument("--force", action="store_true", help="overwrite existing files in --emit DIR")
    add_visual_arguments(p)
    p.set_defaults(run=run)


def _methods(args: argparse.Namespace) -> tuple[Method, ...]:
    """``--method`` as a set of methods to search; the flag no longer sets the scenario's own method."""
    text = args.method
    args.method = None
    if text is None:
        return ()
    key = str(text).strip().lower()
    if key not in METHOD_CHOICES:
        raise ScenarioError("--method", text, "unknown value", "use full, lora, qlora or any")
    return METHOD_CHOICES[key]


def _apply_stage(scn: Scenario, stage: str | None) -> Scenario:
    """``--stage``: projector-only pre-training or LLM + projector fine-tuning (text models: full)."""
    if stage is None:
        return scn
    if not scn.model.is_vlm:
        return replace(scn, train=replace(scn.train, method=Method.FULL, trainable=(Part.LLM,)))
    if stage == "pretrain":
        return replace(scn, train=replace(scn.train, method=Method.FREEZE, trainable=(Part.PROJECTOR,)))
    return replace(scn, train=replace(scn.train, method=Method.FULL, trainable=(Part.LLM, Part.PROJECTOR)))


def run(args: argparse.Namespace) -> int:
    """parse -> search (or size) -> render; exit 1 when nothing fits."""
    methods = _methods(args)
    if args.gpu_type and args.gpus:
        raise VramplanError("give either --gpus (search that cluster) or --gpu-type (find how many GPUs), not both")
    if args.gpu_type and _COUNTED.match(args.gpu_type):
        raise ScenarioError("--gpu-type", args.gpu_type, "takes a GPU type without a count", "e.g. --gpu-type rtx4090")
    if args.emit and not args.gpus and (args.gpu_type or args.compare):
        raise VramplanError("--emit needs a cluster to plan for: pass --gpus (e.g. --gpus 4xrtx4090) instead of "
                            "--gpu-type/--compare")
    data, model_ref = scenario_dict_from_args(args)
    start = _apply_stage(scenario_from_dict(data), args.stage)
    request = PlanRequest(global_batch=args.global_batch, methods=methods, top=args.top,
                          model_parallel=not args.no_model_parallel, optimizer_changes=not args.keep_optimizer,
                          nvme=args.nvme)
    if args.gpu_type or (args.compare and not args.gpus):
        return _sizing_only(args, start, request, model_ref)
    result = search_plans(start, request)
    nearest = nearest_options(result, DEFAULT_ALTERNATIVE_GPUS, max_gpus=args.max_gpus) if not result.plans else ()
    sizing = size_cluster(start, _types(args.compare), methods=methods, global_batch=result.global_batch,
                          max_gpus=args.max_gpus) if args.compare else []
    write_plan_visuals(args, result, model_ref, nearest, sizing)
    verified = None
    if args.verify is not None:
        from ..verify import verify_plans

        verified = verify_plans(result, model_ref, args.verify)
    if args.json:
        out = plan_result_to_dict(result, model_ref, nearest, sizing)
        if verified is not None:
            from ..verify import verified_to_dict

            out["verified"] = verified_to_dict(verified)
        text = json.dumps(out, indent=2)
    else:
        text = render_plan_result(result, nearest)
        if sizing:
            text += "\n\n" + render_sizing_table(sizing, result.global_batch, start.train.seq_len)
        if verified is not None:
            from ..verify import render_verified

            text += "\n\n" + render_verified(verified)
    if args.emit:
        if not result.plans:
            sys.stdout.write(text + "\n")
            sys.stderr.write(f"vramplan: nothing written to {args.emit}: no plan fits\n")
            return 1
        top = result.plans[0]
        files = render_bundle(top.scenario, model_ref, model_path_for(model_ref),
                              header=emit_header(top.estimate, top.step_time), notes=top.notes, out_dir=args.emit)
        written = write_bundle(files, args.emit, force=args.force, flag="--emit")
        sys.stdout.write(text + "\n")
        sys.stderr.write("wrote " + ", ".join(str(p) for p in written) + "\n")
        return 0
    sys.stdout.write(text + "\n")
    return 0 if result.plans else 1


def _types(text: str | None) -> list[str]:
    names = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not names:
        raise ScenarioError("--compare", text, "lists no GPU type", "e.g. --compare rtx4090,a100-80g,h100-80g")
    return names


def _sizing_only(args: argparse.Namespace, start: Scenario, request: PlanRequest, model_ref: str) -> int:
    types = [args.gpu_type] if args.gpu_type else []
    if args.compare:
        types += [t for t in _types(args.compare) if t not in types]
    global_batch = request.global_batch or start_global_batch(start)
    rows = size_cluster(start, types, methods=request.methods, global_batch=global_batch, max_gpus=args.max_gpus)
    write_sizing_visuals(args, rows, global_batch, start, model_ref)
    if args.json:
        sys.stdout.write(json.dumps(sizing_result_to_dict(rows, global_batch, model_ref), indent=2) + "\n")
    else:
        sys.stdout.write(render_sizing_table(rows, global_batch, start.train.seq_len) + "\n")
    return 0 if any(r.count is not None for r in rows) else 1
