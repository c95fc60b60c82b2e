"""GPU calibration: real training steps on one GPU, measured, saved next to vramplan's estimates.

One script, one GPU, under 8 minutes on an H200: dense models of 0.5B-8B, a small MoE, a small VLM;
full, LoRA and QLoRA; checkpointing on and off; sequences of 512-8192; and FSDP2 under a fake
process group (rank 0 of 4 or 8, collectives are no-ops but their buffers are real), which gives
per-rank sharded memory on one device. Every run builds the model from its config.json with
random weights (transformers ``from_config``, directly on the GPU in the scenario's dtype), runs one
warm-up step (optimizer states appear), then measured steps under ``vramplan.monitor.MemoryMonitor``
(per phase: peak allocated, peak reserved, device used via NVML) plus ``nvidia-smi``. Results go to
``calibration/<gpu>-<UTC time>.jsonl`` (one line per run, with GPU, driver and library versions);
the file is written under a ``.partial`` name while running and renamed at the end (also after a
SIGTERM, e.g. from ``timeout``).

    python benchmarks/gpu_calibration.py --list        # the plan, validated on the CPU (CI runs this)
    python benchmarks/gpu_calibration.py --rehearse    # every run's code path on the CPU, model shrunk
    python benchmarks/gpu_calibration.py               # on a GPU machine (about 3-4 minutes on an H200)
    python benchmarks/gpu_calibration.py --only qwen   # runs whose name contains 'qwen'

``--list``/``--dry-run`` needs no GPU: it builds each scenario, computes vramplan's estimate, builds
each config in transformers on the meta device and checks its parameter count against vramplan's,
says which runs the installed packages allow (LoRA needs peft, QLoRA bitsandbytes), and prints the
expected wall time of each run on an H200.

``--rehearse`` needs no GPU either: it runs ``execute()`` for every planned run on the CPU with the
model config shrunk (``workload.shrink_config``: same architecture, 2 layers, hidden 64, vocabulary
512, 4 experts, a 2-layer 56 px vision tower), sequence 64, micro-batch <= 2, the glibc malloc source
instead of ``CudaSource``, and writes the same JSONL records (marked ``"rehearsal"``: they are not
measurements, and ``calibration_accuracy.py`` never counts them) to ``--out`` or a temporary file.
It exercises the build (full, bf16-pure, LoRA via peft, VLM, MoE, FSDP2 under the fake process
group), the monitor, the record format and the budget logic; QLoRA is recorded as skipped without
bitsandbytes. About 30-60 s for all 22 runs on a 2-core machine.

Time budget. Wall time counts from the start of the process (torch and transformers imports
included). A run starts only if its expected wall time (``expected_seconds``: build + warm-up +
measured steps at a conservative 200 TFLOP/s, 20 s more for the first run's CUDA start) ends
before ``--budget`` (420 s); a run still going at ``--deadline`` (450 s) is interrupted (SIGALRM,
recorded as ``timeout``) and every later run is recorded as skipped; each run is also cut at 4x its
expected time (at least 60 s, 150 s for the first). So the script ends by about 460 s (< 8 minutes) whatever happens;
``benchmarks/gpu_session.sh`` adds a hard ``timeout`` (at most 475 s) on top.

Expected timeline on an H200 (``--list`` prints the per-run figures; they are estimates from the
formula above, nothing has been timed on a GPU yet), in seconds from the process start:

    0-15     python start, torch + transformers import, GPU name/driver (NVML)
    15-75    6 Qwen2.5-0.5B runs: the first ~26 s (CUDA context, cuBLAS, first kernels), then ~7 s each
    75-100   Qwen2.5-1.5B full x2 + LoRA (8-10 s each; QLoRA skipped without bitsandbytes)
    100-120  Qwen2.5-3B full + LoRA (~9 s each)
    120-135  OLMoE-4-layer x2 (~7.5 s each)
    135-150  LLaVA (CLIP-L/336 + Qwen2.5-0.5B) full + LoRA (~7 s each)
    150-195  Llama-3.1-8B LoRA s2048 (~14 s), LoRA s8192 (~18 s), bf16-pure (~13 s; QLoRA skipped)
    195-220  FSDP2 x4 Qwen2.5-1.5B (~8 s), FSDP2 x8 Llama-3.1-8B (~13 s)
    ~225     JSONL renamed, done: half of the 450 s deadline, which covers estimates off by 2x
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

T_START = time.perf_counter()
"""Process start (as near as this module can tell): the budget counts from here."""

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramplan.api import estimate_from_dict  # noqa: E402
from vramplan.core.errors import VramplanError  # noqa: E402

CONFIGS = "benchmarks/calibration_configs"
OUT_DIR = ROOT / "calibration"
BUDGET_S = 420.0
"""No run starts unless its expected wall time ends before this many seconds after the process start."""
DEADLINE_S = 450.0
"""A run still going this many seconds after the process start is interrupted; no run starts after it."""
TARGET_GPU = "h200"
"""The GPU the scenarios name in ``--list`` and ``--rehearse`` (a real run names the GPU it finds)."""


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


def expected_seconds(run: Run, steps: int = 2, *, first: bool = False, est: Any = None) -> float:
    """Expected wall time of ``run`` on an H200, in seconds (conservative; see the module docstring).

    Build: 3 s + 0.6 s per billion parameters (module construction in Python, random init and the fp32
    copies of trainable weights on the GPU; a new architecture's transformers import is in the 3 s).
    Each of the 1 + ``steps`` steps: (2 forward + 4 backward (2 when only adapters or a part train) +
    2 recompute with checkpointing) x active parameters x tokens, plus attention
    (4 x seq x tokens x hidden x layers per pass), at 200 TFLOP/s, plus 0.3 s. Then 2 s of cleanup
    and nvidia-smi; the first run adds 20 s (CUDA context, cuBLAS, kernel loading).
    """
    if est is None:
        est = estimate_from_dict(_scenario_for_estimate(run, TARGET_GPU))
    train = run.train
    tokens = int(train.get("micro_batch", 1)) * int(train.get("seq_len", 2048))
    seq = int(train.get("seq_len", 2048))
    decoder = est.scenario.model.decoder
    full = train.get("method", "full") == "full"
    ckpt = train.get("grad_ckpt", "none") != "none"
    passes = 2 + (4 if full else 2) + (2 if ckpt else 0)
    linear = passes * est.params.active * tokens
    attention = (passes / 2) * 4 * seq * tokens * decoder.hidden_size * decoder.num_layers
    step = (linear + attention) / 200e12 + 0.3
    build = 3.0 + 0.6 * est.params.total / 1e9
    return round(build + (1 + steps) * step + 2.0 + (20.0 if first else 0.0), 1)


def validate(runs: list[Run], gpu: str = TARGET_GPU) -> int:
    """--list: estimate every run, build every config on the meta device, compare parameter counts."""
    import torch

    from vramplan.monitor.workload import hf_config
    from vramplan.registry import load_config

    problems = 0
    total_s = 25.0  # imports and CUDA start
    print(f"{'run':<40} {'est. reserved':>13} {'params (vramplan)':>18} {'params (transformers)':>21} "
          f"{'H200 s':>7}  status")
    seen: dict[str, int] = {}
    for index, run in enumerate(runs):
        status = "ok"
        seconds = 0.0
        try:
            est = estimate_from_dict(_scenario_for_estimate(run, gpu))
            reserved = f"{est.peak_reserved_bytes / 2**30:.2f} GiB"
            vparams = est.params.total
            ref = _resolve_model(run.model)
            if ref not in seen:
                import transformers

                cfg = hf_config(load_config(ref))
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
            else:
                seconds = expected_seconds(run, first=index == 0, est=est)
                total_s += seconds
        except VramplanError as exc:
            problems += 1
            reserved, vparams, tparams, status = "-", 0, 0, f"INVALID: {exc}"
        print(f"{run.name:<40} {reserved:>13} {vparams:>18,} {tparams:>21,} {seconds:>7.1f}  {status}")
    print(f"{len(runs)} runs planned; {problems} problem(s); expected about {total_s:.0f} s on an H200 with the "
          f"packages installed here (budget {BUDGET_S:.0f} s, deadline {DEADLINE_S:.0f} s)")
    return 1 if problems else 0


# ---------------------------------------------------------------------------------------------- GPU part
def _versions(torch: Any) -> dict[str, Any]:
    import transformers

    versions = {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
                "python": platform.python_version()}
    for mod in ("peft", "bitsandbytes", "vramplan"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    return versions


def _host_id() -> str:
    """A stable, anonymous id of this host (the same machine gives the same id in every process)."""
    return hashlib.sha256(platform.node().encode()).hexdigest()[:8]


def _env(torch: Any) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    driver = None
    try:
        import pynvml

        pynvml.nvmlInit()
        raw = pynvml.nvmlSystemGetDriverVersion()
        driver = raw.decode() if isinstance(raw, bytes) else str(raw)
    except Exception:
        pass
    return {"gpu_name": props.name, "capacity_bytes": int(props.total_memory),
            "compute_capability": f"{props.major}.{props.minor}", "driver": driver, "versions": _versions(torch),
            "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""), "host_id": _host_id(),
            "cpu_count": os.cpu_count()}


def _cpu_env(torch: Any) -> dict[str, Any]:
    """The ``env`` of a rehearsal record: no GPU, say so."""
    return {"gpu_name": None, "device": "cpu", "capacity_bytes": None, "driver": None, "versions": _versions(torch),
            "host_id": _host_id(), "cpu_count": os.cpu_count(), "note": "CPU rehearsal: not a GPU measurement"}


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
    from torch.testing._internal.distributed.fake_pg import FakeStore  # importing it registers the "fake" backend

    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init_process_group("fake", rank=0, world_size=world, store=FakeStore())


class RunTimeout(BaseException):
    """Raised by SIGALRM (time limit) or SIGTERM inside a run. A BaseException, so that the
    ``except Exception`` of the monitor, transformers or peft cannot swallow it."""


_TERMINATED = threading.Event()


def _on_sigterm(signum: int, frame: Any) -> None:
    _TERMINATED.set()
    raise RunTimeout("terminated (SIGTERM)")


def _on_alarm(signum: int, frame: Any) -> None:
    raise RunTimeout("time limit")


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``RunTimeout`` in the main thread after ``seconds`` (no limit: None, or off the main thread)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Rehearsal:
    """How ``--rehearse`` shrinks a run: the model (``workload.shrink_config``) and the batch."""

    seq_len: int = 64
    micro_batch: int = 2

    def config(self, config: dict[str, Any]) -> dict[str, Any]:
        from vramplan.monitor.workload import shrink_config

        return shrink_config(config)

    def scenario(self, data: dict[str, Any]) -> dict[str, Any]:
        train = dict(data["train"])
        train["seq_len"] = self.seq_len
        train["micro_batch"] = min(int(train.get("micro_batch", 1)), self.micro_batch)
        return {**data, "train": train}

    def describe(self, source: str, device: str = "cpu") -> dict[str, Any]:
        return {"device": device, "source": source, "seq_len": self.seq_len, "micro_batch_max": self.micro_batch,
                "model": "shrunk: 2 layers, hidden 64, vocab 512, 4 experts, 2-layer 56 px vision tower",
                "note": "code-path rehearsal (shrunk model): not a calibration measurement"}


def cpu_source() -> Any:
    """The CPU memory source of a rehearsal: glibc malloc where available, else RSS."""
    from vramplan.monitor import MallocSource, RssSource

    return MallocSource() if MallocSource.available() else RssSource()


def _step_times(run_dir: str) -> list[float]:
    """``step_time_s`` of every step line the monitor wrote."""
    times: list[float] = []
    for path in Path(run_dir).glob("memory_rank*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if rec.get("kind") == "step" and rec.get("step_time_s") is not None:
                    times.append(round(float(rec["step_time_s"]), 4))
    return times


def execute(run: Run, gpu_id: str, env: dict[str, Any], steps: int, *, device: str = "cuda",
            source: Callable[[], Any] | None = None, rehearsal: Rehearsal | None = None,
            seconds: float | None = None) -> dict[str, Any]:
    """Build, warm up, measure one run. Never raises: errors, OOMs and timeouts are recorded.

    ``device``/``source``: where the model runs and the memory source of the monitor (default
    ``CudaSource(0)``; a CPU device defaults to ``cpu_source()``). ``rehearsal``: shrink the model and the
    batch (``--rehearse``). ``seconds``: interrupt the run after that long (status ``timeout``).
    """
    import torch

    from vramplan.adapters.scenario_file import scenario_from_dict
    from vramplan.monitor import CudaSource, MemoryMonitor, is_oom
    from vramplan.monitor.workload import build_workload
    from vramplan.registry import load_config

    cuda = torch.device(device).type == "cuda"
    scenario = run.scenario(gpu_id)
    record: dict[str, Any] = {"schema_version": 1, "run": run.name, "scenario": scenario, "env": env,
                              "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if rehearsal is not None:
        record["rehearsal"] = rehearsal.describe("?", str(device))
    missing = [m for m in run.needs if not _have(m)]
    if missing:
        record.update(status="skipped", error=f"{', '.join(missing)} not installed")
        return record
    if source is None:
        source = (lambda: CudaSource(0)) if cuda else cpu_source
    workload = None
    fsdp = run.parallel.get("engine") in ("fsdp", "fsdp2")
    t0 = time.perf_counter()
    try:
        with time_limit(seconds):
            data = _scenario_for_estimate(run, gpu_id)
            config = load_config(_resolve_model(run.model))
            if rehearsal is not None:
                data, config = rehearsal.scenario(data), rehearsal.config(config)
            scn = scenario_from_dict(data)
            if fsdp:
                _fake_pg(run.gpus)
            workload = build_workload(config, scn, device)
            micro = scn.train.micro_batch
            t_built = time.perf_counter()
            workload.step(micro)  # warm-up: optimizer states, cuBLAS workspaces, autotuning
            if cuda:
                torch.cuda.synchronize()
            t_warm = time.perf_counter()
            src = source()
            if rehearsal is not None:
                record["rehearsal"] = rehearsal.describe(src.name, str(device))
            with tempfile.TemporaryDirectory() as tmp:
                with MemoryMonitor(tmp, source=src, flight_recorder=False, leak_warmup=0) as mon:
                    mon.watch(workload.model, workload.optimizer)
                    for _ in range(steps):
                        mon.begin_phase("forward")
                        workload.step(micro)
                        mon.step()
                    if cuda:
                        torch.cuda.synchronize()
                summary = mon.summary or {}
                step_times = _step_times(tmp)
        measured = summary.get("measured", {})
        if cuda:
            reserved_now: int | None = int(torch.cuda.memory_reserved(0))
            free, total = torch.cuda.mem_get_info(0)
            outside: int | None = max(0, int(total - free) - reserved_now)
            smi = _nvidia_smi_used_mib(0)
        else:
            reserved_now = outside = smi = None
        record.update(
            status="ok",
            measured={
                "peak_allocated_bytes": measured.get("peak_allocated_bytes"),
                "peak_reserved_bytes": measured.get("peak_reserved_bytes"),
                "device_used_bytes": (measured.get("peak_reserved_bytes") or 0) + (outside or 0) if cuda else None,
                "nvml_device_used_bytes": measured.get("device_used_bytes") if cuda else None,
                "nvidia_smi_used_bytes": None if smi is None else smi * 2**20,
                "outside_allocator_bytes": outside,
                "reserved_at_end_bytes": reserved_now,
            },
            phases=measured.get("phases", {}),
            step_time_s=step_times,
            build_s=round(t_built - t0, 2),
            warmup_s=round(t_warm - t_built, 2),
            monitor_internal_errors=summary.get("internal_errors"),
            notes=workload.notes,
        )
    except RunTimeout as exc:
        record.update(status="timeout", error=f"{exc} after {time.perf_counter() - t0:.0f} s")
    except Exception as exc:  # record and go on: one broken run must not lose the others
        if is_oom(exc):
            record.update(status="oom", error=str(exc).splitlines()[0][:400] if str(exc) else "out of memory")
        else:
            record.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:400]}")
    finally:
        # the exception (and the frames holding the batch and activations) is gone here; a broken CUDA
        # context (a device-side assert) makes these calls raise too: never let that lose the record
        workload = None
        gc.collect()
        if cuda:
            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()
            with contextlib.suppress(Exception):
                torch.cuda.reset_peak_memory_stats(0)
        if fsdp:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                if dist.is_initialized():
                    dist.destroy_process_group()
    record["wall_s"] = round(time.perf_counter() - t0, 2)
    return record


def _skipped(run: Run, gpu_id: str, env: dict[str, Any], why: str, rehearsal: Rehearsal | None) -> dict[str, Any]:
    rec = {"schema_version": 1, "run": run.name, "scenario": run.scenario(gpu_id), "env": env,
           "status": "skipped", "error": why}
    if rehearsal is not None:
        rec["rehearsal"] = rehearsal.describe("-")
    return rec


def run_all(runs: list[Run], out: Path, *, gpu_id: str, env: dict[str, Any], steps: int, device: str,
            budget: float, deadline: float, rehearsal: Rehearsal | None = None,
            t_start: float | None = None) -> list[dict[str, Any]]:
    """Execute ``runs`` in order under the time budget, one JSONL line each, written as they finish."""
    t_start = T_START if t_start is None else t_start
    partial = out.with_suffix(out.suffix + ".partial")
    records: list[dict[str, Any]] = []
    previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous_term = signal.signal(signal.SIGTERM, _on_sigterm)
    _TERMINATED.clear()
    try:
        with open(partial, "w", encoding="utf-8") as fh:
            for run in runs:
                elapsed = time.perf_counter() - t_start
                expect = 0.0  # on the H200, also printed by a rehearsal (whose own budget ignores it)
                first = not any(r.get("status") in ("ok", "oom", "error", "timeout") for r in records)
                if not [m for m in run.needs if not _have(m)]:
                    with contextlib.suppress(Exception):
                        expect = expected_seconds(run, steps, first=first)
                budget_expect = expect if rehearsal is None else 0.0
                if _TERMINATED.is_set():
                    rec = _skipped(run, gpu_id, env, "terminated (SIGTERM) before this run", rehearsal)
                elif elapsed + budget_expect > budget or elapsed >= deadline:
                    rec = _skipped(run, gpu_id, env, f"time budget: {elapsed:.0f} s spent, this run needs about "
                                   f"{budget_expect:.0f} s, budget {budget:.0f} s", rehearsal)
                else:
                    # the first run also pays for CUDA's start, which a cold virtual machine may make slow
                    floor = 150.0 if first else 60.0
                    limit = min(deadline - elapsed, max(floor, 4 * expect)) if rehearsal is None else max(
                        1.0, deadline - elapsed)
                    rec = execute(run, gpu_id, env, steps, device=device, rehearsal=rehearsal, seconds=limit)
                    if expect:
                        rec["expected_s" if rehearsal is None else "expected_gpu_s"] = expect
                records.append(rec)
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                m = rec.get("measured") or {}
                reserved = (m.get("peak_reserved_bytes") or 0) / 2**30
                where = "H200 " if rehearsal is not None else ""
                print(f"{run.name:<40} {rec['status']:<8} reserved {reserved:7.2f} GiB  {rec.get('wall_s', 0):6.1f} s"
                      f" (expected {where}{expect:5.1f} s)  {rec.get('error', '')}", flush=True)
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        if partial.exists():
            os.replace(partial, out)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", "--dry-run", dest="dry", action="store_true", help="validate the plan on the CPU")
    parser.add_argument("--rehearse", action="store_true",
                        help="run every planned run's code path on the CPU with the model shrunk (no GPU needed)")
    parser.add_argument("--only", help="run only runs whose name contains this text (comma-separated: any of them)")
    parser.add_argument("--steps", type=int, default=2, help="measured steps per run after the warm-up (default 2)")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds after the start by which a run must be expected to end to start it "
                             f"(default {BUDGET_S:.0f}; no budget with --rehearse)")
    parser.add_argument("--deadline", type=float, default=None,
                        help=f"seconds after the start at which a running run is interrupted (default {DEADLINE_S:.0f};"
                             " 600 with --rehearse)")
    parser.add_argument("--out", help="output file (default calibration/<gpu>-<UTC time>.jsonl, with --rehearse a "
                                      "temporary file; never overwritten)")
    args = parser.parse_args(argv)
    wanted = [w for w in (args.only or "").split(",") if w]
    runs = [r for r in plan() if not wanted or any(w in r.name for w in wanted)]
    if not runs:
        print(f"no run matches --only {args.only!r}")
        return 2
    if args.dry:
        return validate(runs)
    import torch

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    rehearsal: Rehearsal | None = None
    if args.rehearse:
        rehearsal = Rehearsal()
        env = _cpu_env(torch)
        gpu_id, device = TARGET_GPU, "cpu"
        budget = float("inf") if args.budget is None else args.budget
        deadline = 600.0 if args.deadline is None else args.deadline
        out = Path(args.out) if args.out else Path(tempfile.gettempdir()) / f"vramplan-rehearsal-{stamp}.jsonl"
    else:
        if not torch.cuda.is_available():
            print("gpu_calibration: no CUDA GPU here; use --list to validate the plan or --rehearse to run its "
                  "code path on the CPU")
            return 0
        env = _env(torch)
        gpu_id, device = _catalog_gpu(env["gpu_name"], env["capacity_bytes"]), "cuda"
        budget = BUDGET_S if args.budget is None else args.budget
        deadline = DEADLINE_S if args.deadline is None else args.deadline
        out = Path(args.out) if args.out else OUT_DIR / f"{gpu_id}-{stamp}.jsonl"
    if out.exists():
        print(f"{out} already exists; choose another --out")
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    what = "CPU rehearsal (not a measurement)" if rehearsal else \
        f"{env['gpu_name']} ({gpu_id}), driver {env['driver']}"
    print(f"{what}, torch {env['versions']['torch']}; {len(runs)} runs; {time.perf_counter() - T_START:.0f} s since "
          f"start; budget {budget:.0f} s, deadline {deadline:.0f} s", flush=True)
    try:
        records = run_all(runs, out, gpu_id=gpu_id, env=env, steps=args.steps, device=device, budget=budget,
                          deadline=deadline, rehearsal=rehearsal)
    except RunTimeout as exc:  # SIGTERM between two runs: the records so far are in `out`
        print(f"gpu_calibration: {exc}; the finished runs are in {out}")
        return 1
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    print(f"wrote {out} in {time.perf_counter() - T_START:.0f} s: "
          + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
