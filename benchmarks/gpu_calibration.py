"""GPU calibration: real training steps on one GPU, measured, saved next to vramplan's estimates.

One script, one GPU, under 8 minutes on an H200: dense models of 0.5B-8B, a small MoE, a small VLM;
full, LoRA and QLoRA; checkpointing on and off; sequences of 512-8192; and FSDP2 under a fake
process group (rank 0 of 4 or 8, collectives are no-ops but their buffers are real), which gives
per-rank sharded memory on one device. Every run builds the model from its config.json with
random weights (transformers ``from_config``), runs one warm-up step (optimizer states appear),
then measured steps under ``vramplan.monitor.MemoryMonitor`` (per phase: peak allocated, peak
reserved, device used via NVML) plus ``nvidia-smi``. Results go to
``calibration/<gpu>-<UTC time>.jsonl`` (one line per run, with GPU, driver and library versions);
the file is written under a ``.partial`` name while running and renamed at the end.

    python benchmarks/gpu_calibration.py --list        # the plan, validated on the CPU (CI runs this)
    python benchmarks/gpu_calibration.py               # on a GPU machine (about 4-6 minutes on an H200)
    python benchmarks/gpu_calibration.py --only qwen   # runs whose name contains 'qwen'

``--list``/``--dry-run`` needs no GPU: it builds each scenario, computes vramplan's estimate, builds
each config in transformers on the meta device and checks its parameter count against vramplan's,
and says which runs the installed packages allow (LoRA needs peft, QLoRA bitsandbytes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramplan.api import estimate_from_dict  # noqa: E402
from vramplan.core.errors import VramplanError  # noqa: E402

CONFIGS = "benchmarks/calibration_configs"
OUT_DIR = ROOT / "calibration"
BUDGET_S = 450.0
"""Stop starting new runs after this many seconds (the whole script must end within 8 minutes)."""


@dataclass
class Run:
    """One calibration run: a scenario in the vramplan file schema plus how to execute it."""

    name: str
    model: str
    train: dict[str, Any]
    parallel: dict[str, Any] = field(default_factory=lambda: {"engine": "single"})
    gpus: int = 1
    needs: tuple[str, ...] = ()

    def scenario(self, gpu: str) -> dict[str, Any]:
        """The vramplan scenario dict (model path relative to the repo root)."""
        train = {"precision": "bf16-mixed", "optimizer": "adamw", "attention": "sdpa", "grad_accum": 1, **self.train}
        return {"model": self.model, "train": train, "hardware": {"gpu": gpu, "gpus_per_node": self.gpus},
                "parallel": dict(self.parallel)}


def _cfg(name: str) -> str:
    return f"{CONFIGS}/{name}.json"


def plan() -> list[Run]:
    """Every run, cheapest first (the budget cuts the tail, FSDP2 runs come last)."""
    q05, q15, q3 = _cfg("qwen2.5-0.5b"), _cfg("qwen2.5-1.5b"), _cfg("qwen2.5-3b")
    moe, vlm = _cfg("olmoe-4layer"), _cfg("llava-qwen0.5b-clip336")
    lora = {"method": "lora", "lora": {"r": 16, "alpha": 32, "targets": ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                          "gate_proj", "up_proj", "down_proj"]}}
    runs = [
        Run("qwen0.5b-full-s512-b8-nockpt", q05, {"seq_len": 512, "micro_batch": 8, "grad_ckpt": "none"}),
        Run("qwen0.5b-full-s2048-b4-ckpt", q05, {"seq_len": 2048, "micro_batch": 4, "grad_ckpt": "full"}),
        Run("qwen0.5b-full-s2048-b4-nockpt", q05, {"seq_len": 2048, "micro_batch": 4, "grad_ckpt": "none"}),
        Run("qwen0.5b-full-s8192-b1-ckpt", q05, {"seq_len": 8192, "micro_batch": 1, "grad_ckpt": "full"}),
        Run("qwen0.5b-full-s8192-b1-nockpt", q05, {"seq_len": 8192, "micro_batch": 1, "grad_ckpt": "none"}),
        Run("qwen0.5b-bf16pure-s2048-b4-nockpt", q05, {"seq_len": 2048, "micro_batch": 4, "grad_ckpt": "none",
                                                       "precision": "bf16-pure"}),
        Run("qwen1.5b-full-s2048-b2-nockpt", q15, {"seq_len": 2048, "micro_batch": 2, "grad_ckpt": "none"}),
        Run("qwen1.5b-full-s4096-b2-ckpt", q15, {"seq_len": 4096, "micro_batch": 2, "grad_ckpt": "full"}),
        Run("qwen1.5b-lora-s4096-b4-ckpt", q15, {"seq_len": 4096, "micro_batch": 4, "grad_ckpt": "full", **lora},
            needs=("peft",)),
        Run("qwen1.5b-qlora-s4096-b4-ckpt", q15, {"seq_len": 4096, "micro_batch": 4, "grad_ckpt": "full",
                                                  **lora, "method": "qlora"}, needs=("peft", "bitsandbytes")),
        Run("qwen3b-full-s2048-b2-ckpt", q3, {"seq_len": 2048, "micro_batch": 2, "grad_ckpt": "full"}),
        Run("qwen3b-lora-s2048-b4-nockpt", q3, {"seq_len": 2048, "micro_batch": 4, "grad_ckpt": "none", **lora},
            needs=("peft",)),
        Run("olmoe4l-full-s2048-b2-nockpt", moe, {"seq_len": 2048, "micro_batch": 2, "grad_ckpt": "none"}),
        Run("olmoe4l-full-s4096-b2-ckpt", moe, {"seq_len": 4096, "micro_batch": 2, "grad_ckpt": "full"}),
        Run("llava0.5b-full-s2048-b4-ckpt", vlm, {"seq_len": 2048, "micro_batch": 4, "grad_ckpt": "full",
                                                  "images_per_sample": 1, "trainable": ["llm", "projector"]}),
        Run("llava0.5b-lora-s1024-b8-nockpt", vlm, {"seq_len": 1024, "micro_batch": 8, "grad_ckpt": "none",
                                                    "images_per_sample": 1, **lora}, needs=("peft",)),
        Run("llama8b-lora-s2048-b2-ckpt", "llama-3.1-8b", {"seq_len": 2048, "micro_batch": 2, "grad_ckpt": "full", **lora},
            needs=("peft",)),
        Run("llama8b-lora-s8192-b1-ckpt", "llama-3.1-8b", {"seq_len": 8192, "micro_batch": 1, "grad_ckpt": "full", **lora},
            needs=("peft",)),
        Run("llama8b-qlora-s2048-b2-ckpt", "llama-3.1-8b", {"seq_len": 2048, "micro_batch": 2, "grad_ckpt": "full",
                                                            **lora, "method": "qlora"}, needs=("peft", "bitsandbytes")),
        Run("llama8b-bf16pure-s2048-b1-ckpt", "llama-3.1-8b", {"seq_len": 2048, "micro_batch": 1, "grad_ckpt": "full",
                                                               "precision": "bf16-pure"}),
        Run("fsdp2x4-qwen1.5b-full-s2048-b2-ckpt", q15, {"seq_len": 2048, "micro_batch": 2, "grad_ckpt": "full"},
            parallel={"engine": "fsdp2"}, gpus=4),
        Run("fsdp2x8-llama8b-full-s2048-b1-ckpt", "llama-3.1-8b", {"seq_len": 2048, "micro_batch": 1, "grad_ckpt": "full"},
            parallel={"engine": "fsdp2"}, gpus=8),
    ]
    return runs


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _resolve_model(ref: str) -> str:
    return str(ROOT / ref) if ref.startswith(CONFIGS) else ref


def _scenario_for_estimate(run: Run, gpu: str) -> dict[str, Any]:
    data = run.scenario(gpu)
    data["model"] = _resolve_model(data["model"])
    return data


def validate(runs: list[Run], gpu: str = "h200") -> int:
    """--list: estimate every run, build every config on the meta device, compare parameter counts."""
    import torch

    from vramplan.monitor.workload import config_dict_for, hf_config

    problems = 0
    print(f"{'run':<40} {'est. reserved':>13} {'params (vramplan)':>18} {'params (transformers)':>21}  status")
    seen: dict[str, int] = {}
    for run in runs:
        status = "ok"
        try:
            est = estimate_from_dict(_scenario_for_estimate(run, gpu))
            reserved = f"{est.peak_reserved_bytes / 2**30:.2f} GiB"
            vparams = est.params.total
            ref = _resolve_model(run.model)
            if ref not in seen:
                import transformers

                cfg = hf_config(config_dict_for(ref))
                auto = (transformers.AutoModelForImageTextToText if hasattr(cfg, "vision_config")
                        else transformers.AutoModelForCausalLM)
                with torch.device("meta"):
                    model = auto.from_config(cfg)
                seen[ref] = sum(p.numel() for p in model.parameters())
                del model
            tparams = seen[ref]
            if tparams != vparams:
                status = f"PARAM MISMATCH ({tparams - vparams:+d})"
                problems += 1
            missing = [m for m in run.needs if not _have(m)]
            if missing:
                status = f"would skip: {', '.join(missing)} not installed" if status == "ok" else status
        except VramplanError as exc:
            problems += 1
            reserved, vparams, tparams, status = "-", 0, 0, f"INVALID: {exc}"
        print(f"{run.name:<40} {reserved:>13} {vparams:>18,} {tparams:>21,}  {status}")
    print(f"{len(runs)} runs planned; {problems} problem(s); budget {BUDGET_S:.0f} s of GPU time")
    return 1 if problems else 0


# ---------------------------------------------------------------------------------------------- GPU part
def _env(torch: Any) -> dict[str, Any]:
    import transformers

    props = torch.cuda.get_device_properties(0)
    driver = None
    try:
        import pynvml

        pynvml.nvmlInit()
        raw = pynvml.nvmlSystemGetDriverVersion()
        driver = raw.decode() if isinstance(raw, bytes) else str(raw)
    except Exception:
        pass
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
                "python": platform.python_version()}
    for mod in ("peft", "bitsandbytes", "vramplan"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    return {"gpu_name": props.name, "capacity_bytes": int(props.total_memory),
            "compute_capability": f"{props.major}.{props.minor}", "driver": driver, "versions": versions,
            "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""), "hostname_hash": hash(platform.node()) % 10**6}


def _catalog_gpu(name: str, capacity: int) -> str:
    from vramplan.registry import list_gpus

    for g in list_gpus():
        short = g.id.split("-")[0].lower()
        if short in name.lower().replace(" ", "") and abs(g.memory_bytes - capacity) < 0.03 * capacity:
            return g.id
    return f"{capacity / 2**30:.3f}GiB"


def _nvidia_smi_used_mib(index: int = 0) -> int | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", str(index)],
                             capture_output=True, text=True, timeout=20)
        return int(out.stdout.strip().splitlines()[0])
    except Exception:
        return None


def _fake_pg(world: int) -> None:
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init_process_group("fake", rank=0, world_size=world, store=FakeStore())


def execute(run: Run, gpu_id: str, env: dict[str, Any], steps: int) -> dict[str, Any]:
    """Build, warm up, measure one run. Never raises: errors and OOMs are recorded."""
    import torch

    from vramplan.adapters.scenario_file import scenario_from_dict
    from vramplan.monitor import CudaSource, MemoryMonitor
    from vramplan.monitor.workload import build_workload, config_dict_for

    scenario = run.scenario(gpu_id)
    record: dict[str, Any] = {"schema_version": 1, "run": run.name, "scenario": scenario, "env": env,
                              "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    missing = [m for m in run.needs if not _have(m)]
    if missing:
        record.update(status="skipped", error=f"{', '.join(missing)} not installed")
        return record
    workload = None
    t0 = time.perf_counter()
    try:
        scn = scenario_from_dict(_scenario_for_estimate(run, gpu_id))
        if run.parallel.get("engine") in ("fsdp", "fsdp2"):
            _fake_pg(run.gpus)
        workload = build_workload(config_dict_for(_resolve_model(run.model)), scn, "cuda")
        micro = scn.train.micro_batch
        workload.step(micro)  # warm-up: optimizer states, cuBLAS workspaces, autotuning
        torch.cuda.synchronize()
        with tempfile.TemporaryDirectory() as tmp:
            with MemoryMonitor(tmp, source=CudaSource(0), flight_recorder=False, leak_warmup=0) as mon:
                mon.watch(workload.model, workload.optimizer)
                for _ in range(steps):
                    mon.begin_phase("forward")
                    workload.step(micro)
                    mon.step()
                torch.cuda.synchronize()
            summary = mon.summary or {}
        reserved_now = int(torch.cuda.memory_reserved(0))
        free, total = torch.cuda.mem_get_info(0)
        outside = max(0, int(total - free) - reserved_now)
        measured = summary.get("measured", {})
        smi = _nvidia_smi_used_mib(0)
        record.update(
            status="ok",
            measured={
                "peak_allocated_bytes": measured.get("peak_allocated_bytes"),
                "peak_reserved_bytes": measured.get("peak_reserved_bytes"),
                "device_used_bytes": (measured.get("peak_reserved_bytes") or 0) + outside,
                "nvml_device_used_bytes": measured.get("device_used_bytes"),
                "nvidia_smi_used_bytes": None if smi is None else smi * 2**20,
                "outside_allocator_bytes": outside,
                "reserved_at_end_bytes": reserved_now,
            },
            phases=measured.get("phases", {}),
            step_time_s=[r for r in [summary.get("overhead", {}).get("wall_s")] if r],
            notes=workload.notes,
        )
    except torch.cuda.OutOfMemoryError as exc:
        record.update(status="oom", error=str(exc).splitlines()[0][:400])
    except Exception as exc:  # record and go on: one broken run must not lose the others
        record.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:400]}")
    finally:
        workload = None
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(0)
        if run.parallel.get("engine") in ("fsdp", "fsdp2"):
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    record["wall_s"] = round(time.perf_counter() - t0, 2)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", "--dry-run", dest="dry", action="store_true", help="validate the plan on the CPU")
    parser.add_argument("--only", help="run only runs whose name contains this text")
    parser.add_argument("--steps", type=int, default=2, help="measured steps per run after the warm-up (default 2)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds after which no new run starts")
    parser.add_argument("--out", help="output file (default calibration/<gpu>-<UTC time>.jsonl; never overwritten)")
    args = parser.parse_args(argv)
    runs = [r for r in plan() if not args.only or args.only in r.name]
    if not runs:
        print(f"no run matches --only {args.only!r}")
        return 2
    if args.dry:
        return validate(runs)
    import torch

    if not torch.cuda.is_available():
        print("gpu_calibration: no CUDA GPU here; use --list to validate the plan on the CPU")
        return 0
    env = _env(torch)
    gpu_id = _catalog_gpu(env["gpu_name"], env["capacity_bytes"])
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else OUT_DIR / f"{gpu_id}-{stamp}.jsonl"
    if out.exists():
        print(f"{out} already exists; choose another --out")
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(out.suffix + ".partial")
    start = time.perf_counter()
    print(f"{env['gpu_name']} ({gpu_id}), driver {env['driver']}, torch {env['versions']['torch']}; {len(runs)} runs")
    with open(partial, "w", encoding="utf-8") as fh:
        for run in runs:
            if time.perf_counter() - start > args.budget:
                rec = {"schema_version": 1, "run": run.name, "scenario": run.scenario(gpu_id), "env": env,
                       "status": "skipped", "error": f"time budget of {args.budget:.0f} s spent"}
            else:
                rec = execute(run, gpu_id, env, args.steps)
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            m = rec.get("measured") or {}
            print(f"{run.name:<40} {rec['status']:<8} reserved {((m.get('peak_reserved_bytes') or 0) / 2**30):7.2f} GiB"
                  f"  {rec.get('wall_s', 0):6.1f} s  {rec.get('error', '')}", flush=True)
    os.replace(partial, out)
    print(f"wrote {out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
