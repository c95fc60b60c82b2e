"""Scenario flags shared by estimate, plan and doctor: flags -> overrides of the scenario-file dict."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from ..adapters.scenario_file import load_scenario_ref, read_structured_file
from ..core.errors import VramplanError
from ..registry.scenario_presets import builtin_scenario_names


def add_scenario_arguments(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    """Register the scenario flags (each overrides the same key of a scenario file)."""
    if positional:
        parser.add_argument(
            "target", nargs="?", metavar="SCENARIO_OR_MODEL",
            help="scenario file (YAML/JSON), built-in scenario name, model preset, config.json path or Hub id",
        )
    parser.add_argument("--scenario", help="scenario file (YAML/JSON) or built-in scenario name")
    parser.add_argument("--model", help="preset (vramplan models), path to config.json, or Hub id")
    g = parser.add_argument_group("hardware")
    g.add_argument("--gpus", help="GPUs per node: 4xrtx4090, 8xa100-80g, 6x24GiB")
    g.add_argument("--nodes", type=int)
    g.add_argument("--host-ram", help="host RAM per node, e.g. 256GB")
    t = parser.add_argument_group("training")
    t.add_argument("--method", help="full | lora | qlora | freeze")
    t.add_argument("--trainable", help="comma list of parts: llm,projector,vision,vision_aux")
    t.add_argument("--lora-r", type=int)
    t.add_argument("--lora-alpha", type=int)
    t.add_argument("--lora-targets", help="comma list, e.g. q_proj,v_proj or all-linear")
    t.add_argument("--precision", help="fp32 | fp16-mixed | bf16-mixed | bf16-pure")
    t.add_argument("--optimizer", help="adamw | adamw-fused | adamw-8bit | paged-adamw-8bit | adafactor | sgd")
    t.add_argument("--micro-batch", type=int, help="per-device micro-batch")
    t.add_argument("--grad-accum", type=int)
    t.add_argument("--seq-len", type=int, help="tokens per sample, image tokens included")
    t.add_argument("--images-per-sample", type=int)
    t.add_argument("--image-size", metavar="WxH", help="image size in pixels for Qwen2-VL/2.5-VL and LLaVA-NeXT, e.g. 1120x896 (sets the tokens per image)")
    t.add_argument("--grad-ckpt", help="none | selective | full")
    t.add_argument("--attention", help="flash | sdpa | eager")
    t.add_argument("--loss", help="standard | chunked")
    p = parser.add_argument_group("parallelism")
    p.add_argument("--engine", help="single | ddp | deepspeed | fsdp | fsdp2")
    p.add_argument("--zero", type=int, help="DeepSpeed ZeRO stage 0-3")
    p.add_argument("--offload-optimizer", help="none | cpu | nvme")
    p.add_argument("--offload-param", help="none | cpu | nvme")
    p.add_argument("--tp", type=int)
    p.add_argument("--pp", type=int)
    p.add_argument("--ep", type=int)
    p.add_argument("--fsdp-sharding", help="full-shard | shard-grad-op | hybrid-shard | no-shard")
    p.add_argument("--reduce-bucket-size", help="elements or auto")
    p.add_argument("--expandable-segments", action="store_true", default=None)
    parser.add_argument("--headroom", type=float, help="fraction of GPU memory kept free (default 0.03)")


def load_base_scenario(ref: str) -> dict[str, Any]:
    """A scenario dict from a file path or a built-in scenario name."""
    return load_scenario_ref(ref)


def is_scenario_ref(ref: str) -> bool:
    """Whether a positional argument names a scenario (file with .yaml/.yml/.json or a built-in) rather than a model."""
    path = Path(ref)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml") :
        return True
    if path.is_file() and path.suffix.lower() == ".json":
        data = read_structured_file(path)
        return isinstance(data, dict) and "model" in data and ("train" in data or "hardware" in data)
    return ref in builtin_scenario_names()


def scenario_dict_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """(scenario dict, model reference) from the positional target, --scenario and the override flags."""
    data: dict[str, Any] = {}
    target = getattr(args, "target", None)
    if args.scenario:
        data = copy.deepcopy(load_base_scenario(args.scenario))
    if target:
        if is_scenario_ref(target) and not args.scenario:
            data = copy.deepcopy(load_base_scenario(target))
        elif args.model:
            raise VramplanError(f"both a model ({target!r}) and --model ({args.model!r}) given; keep one")
        else:
            data["model"] = target
    if args.model:
        data["model"] = args.model
    if not data.get("model"):
        raise VramplanError(
            "no model given: pass a preset (e.g. 'vramplan estimate mgm-2b --gpus 4xrtx4090'), a scenario file, "
            "or a built-in scenario (" + ", ".join(builtin_scenario_names()) + ")"
        )
    data.pop("name", None)
    data.pop("description", None)
    train = data.setdefault("train", {}) or {}
    hw = data.setdefault("hardware", {}) or {}
    par = data.setdefault("parallel", {}) or {}
    data["train"], data["hardware"], data["parallel"] = train, hw, par
    if args.gpus:
        from ..registry import list_gpus, parse_gpus

        gpu, count = parse_gpus(args.gpus)
        hw["gpu"] = gpu.id if gpu.id in {g.id for g in list_gpus()} else args.gpus
        hw["gpus_per_node"] = count
        if not args.engine and "engine" not in par:
            par["engine"] = "single" if count * (args.nodes or hw.get("nodes", 1) or 1) == 1 else "deepspeed"
        elif par.get("engine") == "single" and count > 1 and not args.engine:
            par["engine"] = "deepspeed"
    if args.nodes:
        hw["nodes"] = args.nodes
    if args.host_ram:
        hw["host_ram_gb"] = args.host_ram
    simple_train = {
        "method": args.method, "precision": args.precision, "optimizer": args.optimizer,
        "micro_batch": args.micro_batch, "grad_accum": args.grad_accum, "seq_len": args.seq_len,
        "images_per_sample": args.images_per_sample, "image_size": args.image_size, "grad_ckpt": args.grad_ckpt,
        "attention": args.attention, "loss": args.loss, "trainable": args.trainable,
    }
    for key, value in simple_train.items():
        if value is not None:
            train[key] = value
    if args.lora_r is not None or args.lora_alpha is not None or args.lora_targets:
        lora = train.setdefault("lora", {}) or {}
        train["lora"] = lora
        if args.lora_r is not None:
            lora["r"] = args.lora_r
        if args.lora_alpha is not None:
            lora["alpha"] = args.lora_alpha
        if args.lora_targets:
            lora["targets"] = args.lora_targets
    simple_par = {
        "engine": args.engine, "zero": args.zero, "offload_optimizer": args.offload_optimizer,
        "offload_param": args.offload_param, "tp": args.tp, "pp": args.pp, "ep": args.ep,
        "fsdp_sharding": args.fsdp_sharding, "expandable_segments": args.expandable_segments,
    }
    for key, value in simple_par.items():
        if value is not None:
            par[key] = value
    if args.reduce_bucket_size:
        ds = par.setdefault("deepspeed", {}) or {}
        par["deepspeed"] = ds
        ds["reduce_bucket_size"] = args.reduce_bucket_size
    if args.headroom is not None:
        data["headroom"] = args.headroom
    return data, str(data["model"])
