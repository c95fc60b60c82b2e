"""Real DeepSpeed ZeRO on the CPU: the bytes of model states each rank holds, measured, next to vramplan's estimate.

The tracer (``engines.py``) cannot run ZeRO in one process, so it applies ZeRO's partitioning to one
unsharded rank by the analytical rules of ``core/memory/states.py`` and ``buffers.py``. This module checks
those rules against DeepSpeed's own code: DeepSpeed (>= 0.16) runs ZeRO stages 0-3 on the CPU with its CPU
accelerator and the gloo backend, so ``world_size`` real ranks are launched as subprocesses on this machine,
each builds the same tiny Llama-family model from a config dict (random bf16 weights), calls
``deepspeed.initialize`` and trains a few steps of random tokens. Each rank measures the live CPU storages
at fixed moments:

- ``init``: after ``deepspeed.initialize`` (16-bit params or their partitions, fp32 master partitions,
  buffers allocated at init such as ZeRO-3's gradient partition);
- ``accum`` (gradient accumulation > 1 only): between two micro-steps of the last step;
- ``grads_end``: inside ``engine.backward`` of the last step, when autograd has finished and DeepSpeed's
  epilogue starts (ZeRO-1: every full 16-bit ``.grad``; ZeRO-2/3: the gradient partition, the IPG bucket);
- ``backward``: after ``engine.backward`` of the last step, before ``engine.step`` (what the step starts from);
- ``steady``: after ``engine.step`` of step 2 (+ optimizer states; what survives between steps).

A census is every ``torch.Tensor`` the garbage collector can see, deduplicated by storage (``data_ptr`` of
the untyped storage; views share it), plus parameters' ``.grad``. Each storage is filed under a shared
breakdown key by the first attribute path through which it is reachable from the engine (breadth-first
over ``__dict__``, lists, tuples and dicts): the basic optimizer's ``state`` -> ``model_states/optimizer``;
a path naming ``fp32`` -> ``model_states/master``; the IPG buckets (walked first: a ``.grad`` may be a view
into one) -> ``buffers/zero_buckets``; a ZeRO-3 parameter's gathered full data and its full gradient before
the reduce-scatter -> ``buffers/gathered_params``; ``grad`` -> ``model_states/grads``; parameters,
``bit16``/``fp16``/``lp_param``/``ds_tensor`` -> ``model_states/params``; the rest (the batch, bookkeeping
scalars) -> ``other``. The model's rotary ``inv_freq`` buffers (256 B) land in ``model_states/params``.
Bytes are the storages' exact sizes (no 512 B allocator rounding: the CPU allocator does not round, and the
comparison is of the engine's arithmetic, not of the CUDA allocator).

The shared-memory all-reduce op (a JIT-built C++ extension) is disabled, so gloo does every collective and
nothing is compiled; ``"torch_adam": true`` makes the basic optimizer ``torch.optim.AdamW`` (DeepSpeed's
``FusedAdam`` would be JIT-built too; its states are the same two fp32 moments).

Run ``python3 -m vramplan.tracing.deepspeed_cpu`` (or ``benchmarks/deepspeed_cpu_states.py`` for the
comparison table). Imports torch, transformers and deepspeed in the worker processes only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MOMENTS = ("init", "accum", "grads_end", "backward", "steady")
TINY_BYTES = 64
"""Storages up to this size (0-dim scalars: Adam's ``step``, the grad norm, overflow flags) are ``other``."""
KEYS = ("model_states/params", "model_states/grads", "model_states/master", "model_states/optimizer",
        "buffers/zero_buckets", "buffers/gathered_params", "other")

TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1024,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
"""The default model: 1,975,552 parameters, ~4 MB in bf16 -- big enough for h^2 buckets (65,536 elements) to be
far below the model size, as on real models, small enough that three stages on two ranks run in seconds."""


def ds_config(stage: int, hidden: int, *, micro_batch: int = 2, grad_accum: int = 1,
              zero_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The DeepSpeed config of one run: bf16, AdamW, and the ZeRO values HF Trainer fills in for "auto"
    (transformers integrations/deepspeed.py ``trainer_config_finalize``: reduce bucket h^2, stage-3 prefetch
    0.9 h^2, persistence threshold 10 h), so that vramplan's "auto" scenario describes the same run."""
    zero: dict[str, Any] = {"stage": stage, "reduce_bucket_size": hidden * hidden}
    if stage == 3:
        zero.update(stage3_prefetch_bucket_size=int(0.9 * hidden * hidden),
                    stage3_param_persistence_threshold=10 * hidden)
    zero.update(zero_overrides or {})
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "zero_optimization": zero,
        "bf16": {"enabled": True},
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-4, "torch_adam": True}},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
    }


@dataclass(slots=True)
class RankMeasurement:
    """Bytes per key at each moment on one rank of one run."""

    stage: int
    rank: int
    world_size: int
    bytes: dict[str, dict[str, int]]
    """moment -> key -> bytes."""
    model_bytes: int
    """Census right after the model was built, before ``deepspeed.initialize`` (the model's own weights)."""
    numel: int
    optimizer: str
    backward_peak: dict[str, int] = field(default_factory=dict)
    """Inside ``engine.backward`` of the last step: ``start`` (census before it), ``zero`` (peak of the live
    storages allocated from ``deepspeed/runtime/zero`` frames: buckets, gradient partitions, flatten copies),
    ``all`` (peak of every storage allocated inside it: those plus activation and parameter gradients)."""
    notes: list[str] = field(default_factory=list)
    largest: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    """moment -> (bytes, key, path) of every storage, largest first (``detail`` only)."""

    def total(self, moment: str, keys: Iterable[str] | None = None) -> int:
        """Sum of ``keys`` (all of them when None) at ``moment``."""
        items = self.bytes[moment]
        return sum(v for k, v in items.items() if keys is None or k in keys)


# ----------------------------------------------------------------------------------------------- worker side


def _classify(path: str) -> str:
    """The breakdown key of a storage first reached through ``path`` (module docstring)."""
    p = path.lower()
    if p.startswith("gathered:"):
        return "buffers/gathered_params"
    if p.startswith("basic_optimizer.state") or "optimizer.state[" in p:
        return "model_states/optimizer"
    if "ipg" in p or "bucket" in p:
        return "buffers/zero_buckets"
    if "fp32" in p or "master" in p:
        return "model_states/master"
    if "grad" in p:
        return "model_states/grads"
    if any(s in p for s in ("bit16", "fp16", "lp_param", "ds_tensor", "param", "module.")):
        return "model_states/params"
    return "other"


def _walk(roots: Sequence[tuple[str, Any]], limit: int = 200_000) -> dict[int, str]:
    """Storage data_ptr -> first attribute path reaching it, breadth-first from ``roots``."""
    import collections

    import torch

    seen: set[int] = set()
    found: dict[int, str] = {}
    queue: collections.deque[tuple[str, Any]] = collections.deque(roots)
    steps = 0
    while queue and steps < limit:
        path, obj = queue.popleft()
        steps += 1
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            st = obj.untyped_storage()
            # a ZeRO-3 parameter whose full data is gathered (not a persistent one): the gathered working set,
            # its full gradient before the reduce-scatter too
            gathered = hasattr(obj, "ds_tensor") and not getattr(obj, "ds_persist", False)
            if st.nbytes() and st.data_ptr() not in found:
                found[st.data_ptr()] = ("gathered:" if gathered else "") + path
            if obj.grad is not None:
                gst = obj.grad.untyped_storage()
                if gathered and gst.nbytes() and gst.data_ptr() not in found:
                    found[gst.data_ptr()] = "gathered:" + path + ".grad"
                queue.append((path + ".grad", obj.grad))
            for k, v in getattr(obj, "__dict__", {}).items():
                queue.append((f"{path}.{k}", v))
            continue
        if isinstance(obj, (str, bytes, int, float, bool, type(None), type)):
            continue
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                name = k if isinstance(k, (str, int)) else type(k).__name__
                queue.append((f"{path}[{name}]", v))
            continue
        if isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
            for i, v in enumerate(list(obj)):
                queue.append((f"{path}[{i}]", v))
            continue
        mod = type(obj).__module__ or ""
        if not mod.startswith(("deepspeed", "torch", "transformers", "collections")):
            continue
        if isinstance(obj, torch.nn.Module):
            for k, v in obj.named_parameters(recurse=False):
                queue.append((f"{path}.{k}", v))
            for k, v in obj.named_buffers(recurse=False):
                queue.append((f"{path}.{k}", v))
            for k, v in obj.named_children():
                queue.append((f"{path}.{k}", v))
        d = getattr(obj, "__dict__", None)
        if isinstance(d, dict):
            for k, v in list(d.items()):
                if k in ("_modules", "_parameters", "_buffers", "timers", "_forward_hooks", "_backward_hooks",
                         "_forward_pre_hooks", "monitor", "tput_timer", "training_dataloader"):
                    continue
                queue.append((f"{path}.{k}", v))
    return found


def _census(engine: Any, model: Any, detail: bool) -> tuple[dict[str, int], list[tuple[int, str, str]]]:
    """Bytes per key of every live storage (module docstring), and (bytes, key, path) per storage."""
    import gc

    import torch

    gc.collect()
    storages: dict[int, int] = {}
    for obj in gc.get_objects():
        try:
            if not isinstance(obj, torch.Tensor) or obj.device.type != "cpu":
                continue
            tensors = [obj] + ([obj.grad] if obj.grad is not None else [])
        except Exception:  # noqa: BLE001 - exotic tensor subclasses without a plain storage are not counted
            tensors = []
        for t in tensors:
            st = t.untyped_storage()
            if st.nbytes():
                storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
    roots: list[tuple[str, Any]] = []
    if engine is not None:
        opt = getattr(engine, "optimizer", None)
        basic = getattr(engine, "basic_optimizer", None)
        if basic is not None:
            roots.append(("basic_optimizer.state", getattr(basic, "state", {})))
        if opt is not None:
            # the IPG buckets first: a parameter's .grad may be a view into one (stage_1_and_2.py
            # copy_grads_in_partition / stage3.py), and the storage is the bucket's
            for dtype, bucket in (getattr(opt, "ipg_buckets", None) or {}).items():
                buffers = bucket.buffer if isinstance(bucket.buffer, (list, tuple)) else [bucket.buffer]
                roots.extend((f"optimizer.ipg_buckets[{dtype}].buffer", b) for b in buffers if b is not None)
            roots.append(("optimizer", opt))
        roots.append(("module", engine.module))
        roots.append(("engine", engine))
    else:
        roots.append(("module", model))
    paths = _walk(roots)
    out = dict.fromkeys(KEYS, 0)
    rows: list[tuple[int, str, str]] = []
    for ptr, nbytes in storages.items():
        path = paths.get(ptr, "<unreached>")
        # 0-dim bookkeeping (Adam's step, the grad norm, overflow flags) is not a model state
        key = _classify(path) if ptr in paths and nbytes > TINY_BYTES else "other"
        out[key] += nbytes
        if detail:
            rows.append((nbytes, key, path))
    rows.sort(reverse=True)
    return out, rows


def _peak_mode_class() -> type:
    """``_PeakMode``: a ``TorchDispatchMode`` that registers every storage an op outputs once (weakref
    finalizer = freed) and keeps the peak of the live new bytes, all of them and those allocated with a
    ``deepspeed/runtime/zero`` frame on the Python stack (vramplan/tracing/tracker.py's pattern)."""
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class _PeakMode(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            import gc

            gc.collect()
            self.existing = {t.untyped_storage().data_ptr() for t in gc.get_objects()
                             if isinstance(t, torch.Tensor) and t.device.type == "cpu"}
            self.live: dict[int, tuple[int, bool]] = {}
            self.zero = self.all = self.peak_zero = self.peak_all = 0

        def _free(self, ptr: int) -> None:
            nbytes, zero = self.live.pop(ptr, (0, False))
            self.all -= nbytes
            if zero:
                self.zero -= nbytes

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor):
                    continue
                st = t.untyped_storage()
                ptr, nbytes = st.data_ptr(), st.nbytes()
                if not nbytes or ptr in self.live or ptr in self.existing:
                    continue
                frame, zero = sys._getframe(1), False
                while frame is not None:
                    if "deepspeed/runtime/zero" in frame.f_code.co_filename.replace(os.sep, "/"):
                        zero = True
                        break
                    frame = frame.f_back
                self.live[ptr] = (nbytes, zero)
                weakref.finalize(st, self._free, ptr)
                self.all += nbytes
                self.peak_all = max(self.peak_all, self.all)
                if zero:
                    self.zero += nbytes
                    self.peak_zero = max(self.peak_zero, self.zero)
            return out

    return _PeakMode


def _census_at_epilogue(engine: Any, stage: int, measured: dict[str, dict[str, int]],
                        rows: dict[str, list[tuple[int, str, str]]], detail: int) -> None:
    """Take the ``grads_end`` census once, when autograd has finished and DeepSpeed's backward epilogue
    starts: ZeRO-1's ``reduce_gradients`` (every full ``.grad`` still alive), else the optimizer's
    ``independent_gradient_partition_epilogue`` (ZeRO-2/3: the gradient partition and the IPG bucket).
    The wrapper is an instance attribute and removes itself after the first call."""
    opt = engine.optimizer
    name = "reduce_gradients" if stage == 1 else "independent_gradient_partition_epilogue"
    original = getattr(opt, name, None)
    if original is None:  # ZeRO-0 (no epilogue): the census after backward stands in
        return

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        measured["grads_end"], rows["grads_end"] = _census(engine, None, detail)
        del opt.__dict__[name]
        return original(*args, **kwargs)

    opt.__dict__[name] = wrapped


def _worker(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One rank: every stage of ``spec`` in turn, one census per moment (module docstring)."""
    import gc
    import logging

    import torch

    torch.set_num_threads(1)
    import deepspeed
    import deepspeed.ops
    from deepspeed.utils import logger as ds_logger
    from transformers import AutoConfig, AutoModelForCausalLM

    ds_logger.setLevel(logging.ERROR)
    # gloo does every collective; the shared-memory all-reduce extension is not JIT-built (module docstring)
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo")
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    _PeakMode = _peak_mode_class()
    config = dict(spec["model"])
    results: list[dict[str, Any]] = []
    for stage in spec["stages"]:
        torch.manual_seed(0)
        cfg = AutoConfig.for_model(**config)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        model.train()
        numel = sum(p.numel() for p in model.parameters())
        model_bytes = sum(_census(None, model, False)[0].values())
        ds_cfg = ds_config(stage, cfg.hidden_size, micro_batch=spec["micro_batch"], grad_accum=spec["grad_accum"],
                           zero_overrides=spec.get("zero_overrides"))
        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters()],
                                               config=ds_cfg)
        del model
        measured: dict[str, dict[str, int]] = {}
        rows: dict[str, list[tuple[int, str, str]]] = {}
        measured["init"], rows["init"] = _census(engine, None, spec["detail"])
        gen = torch.Generator().manual_seed(1 + rank)
        vocab = cfg.vocab_size
        ga = spec["grad_accum"]
        peak: dict[str, int] = {}
        for micro in range(spec["steps"] * ga):
            last_step = micro >= (spec["steps"] - 1) * ga
            ids = torch.randint(0, vocab, (spec["micro_batch"], spec["seq_len"]), generator=gen)
            loss = engine(input_ids=ids, labels=ids).loss
            if last_step and micro % ga == ga - 1:
                _census_at_epilogue(engine, stage, measured, rows, spec["detail"])
                before = _census(engine, None, False)[0]
                with _PeakMode() as mode:
                    engine.backward(loss)
                peak = {"start": sum(before.values()), "zero": mode.peak_zero, "all": mode.peak_all}
                del loss
                measured["backward"], rows["backward"] = _census(engine, None, spec["detail"])
            else:
                engine.backward(loss)
                del loss
            engine.step()
            del ids
            if last_step and micro % ga == 0 and ga > 1:
                measured["accum"], rows["accum"] = _census(engine, None, spec["detail"])
        measured["steady"], rows["steady"] = _census(engine, None, spec["detail"])
        opt_name = f"{type(engine.optimizer).__name__}({type(engine.basic_optimizer).__name__})"
        results.append({"stage": stage, "rank": rank, "world_size": world, "bytes": measured, "backward_peak": peak,
                        "model_bytes": model_bytes, "numel": numel, "optimizer": opt_name,
                        "largest": {m: r[:spec["detail"]] for m, r in rows.items()} if spec["detail"] else {}})
        engine.destroy() if hasattr(engine, "destroy") else None
        del engine
        gc.collect()
        dist.barrier()
    return results


# ----------------------------------------------------------------------------------------------- launcher side


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(stages: Sequence[int] = (1, 2, 3), *, world_size: int = 2, model: dict[str, Any] | None = None,
            micro_batch: int = 2, seq_len: int = 32, steps: int = 2, grad_accum: int = 1,
            zero_overrides: dict[str, Any] | None = None,
            detail: int = 0, timeout: float = 600.0) -> list[RankMeasurement]:
    """Launch ``world_size`` DeepSpeed ranks on the CPU, run ``stages`` in turn, return one measurement per
    (stage, rank). Raises ``RuntimeError`` with the ranks' stderr tail when a rank fails."""
    if steps < 2:
        raise ValueError("steps must be >= 2 (the steady state is the second step on)")
    spec = {"model": model or TINY_LLAMA, "stages": list(stages), "micro_batch": micro_batch, "seq_len": seq_len,
            "steps": steps, "grad_accum": grad_accum, "zero_overrides": zero_overrides, "detail": detail}
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="vramplan-ds-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        procs = []
        for rank in range(world_size):
            env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                       WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size),
                       OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", DS_ACCELERATOR="cpu",
                       TRANSFORMERS_VERBOSITY="error")
            out = Path(tmp) / f"rank{rank}.json"
            err = open(Path(tmp) / f"rank{rank}.err", "w")  # noqa: SIM115 - closed below
            procs.append((subprocess.Popen([sys.executable, "-m", "vramplan.tracing.deepspeed_cpu", "--worker",
                                            str(spec_path), str(out)], env=env, stdout=err, stderr=err), out, err))
        failed = []
        for proc, out, err in procs:
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = -9
            err.close()
            if rc != 0 or not out.exists():
                failed.append((rc, Path(err.name).read_text()[-3000:]))
        if failed:
            for proc, _, _ in procs:
                if proc.poll() is None:
                    proc.kill()
            tails = "\n---\n".join(f"rc={rc}\n{tail}" for rc, tail in failed)
            raise RuntimeError("DeepSpeed CPU rank failed:\n" + tails)
        results = []
        for _, out, _ in procs:
            for r in json.loads(out.read_text()):
                r["largest"] = {k: [tuple(x) for x in v] for k, v in r["largest"].items()}
                results.append(RankMeasurement(**r))
    return sorted(results, key=lambda m: (m.stage, m.rank))


MODEL_STATE_KEYS = ("model_states/params", "model_states/grads", "model_states/master", "model_states/optimizer")


def scenario_for(stage: int, world_size: int, *, model: dict[str, Any] | None = None, micro_batch: int = 2,
                 seq_len: int = 32, grad_accum: int = 1, reduce_bucket_size: int | None = None) -> Any:
    """The vramplan scenario of one measured run: the same config dict parsed by the HF adapter, DeepSpeed
    ZeRO-``stage`` on ``world_size`` GPUs of one node, bf16, full fine-tuning, AdamW, HF "auto" knobs."""
    from ..api import load_scenario, model_from_config

    spec = model_from_config(model or TINY_LLAMA, name="tiny-llama")
    data = {"model": "tiny-llama",
            "train": {"method": "full", "precision": "bf16-mixed", "optimizer": "adamw", "micro_batch": micro_batch,
                      "grad_accum": grad_accum, "seq_len": seq_len, "grad_ckpt": "none", "attention": "sdpa"},
            "hardware": {"gpu": "h100-80g", "gpus_per_node": world_size, "nodes": 1},
            "parallel": {"engine": "deepspeed", "zero": stage}}
    if reduce_bucket_size is not None:
        data["parallel"]["deepspeed"] = {"reduce_bucket_size": reduce_bucket_size}
    return load_scenario(data, model=spec)


def estimated(stage: int, world_size: int, **kwargs: Any) -> dict[str, dict[str, int]]:
    """vramplan's bytes per key for the moments this module measures (per rank, most loaded rank):

    - ``grads_end`` (the estimate's end of backward, ``core/estimate.py`` ``bwd_end``): params, master,
      optimizer, ``grads_full`` + ``grad_transient`` (the largest parameter's gradient waiting to be bucketed,
      which the estimate files under ``temporaries/backward``), the IPG bucket(s);
      and ZeRO-3's gathered working set at the bottom of backward (``gathered_backward_bottom``);
    - ``steady`` (between steps, the estimate's forward): ``grads_before_backward`` and
      ``zero_buckets_between_steps`` (ZeRO-3's bucket always, ZeRO-1/2's only while accumulating).
    """
    from ..core.memory.buffers import engine_buffers
    from ..core.memory.params import rank_params
    from ..core.memory.states import model_state_bytes

    scn = scenario_for(stage, world_size, **kwargs)
    rp = rank_params(scn)
    st = model_state_bytes(scn, rp)
    buf = engine_buffers(scn, rp, st)
    base = {"model_states/params": st.params, "model_states/master": st.master, "model_states/optimizer": st.optimizer}
    return {
        "grads_end": {**base, "model_states/grads": st.grads_full + buf.grad_transient,
                      "buffers/zero_buckets": buf.zero_buckets,
                      "buffers/gathered_params": buf.gathered_at_backward_bottom},
        "steady": {**base, "model_states/grads": st.grads_before_backward,
                   "buffers/zero_buckets": buf.zero_buckets_between_steps},
    }


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the comparison table."""

    stage: int
    rank: int
    moment: str
    key: str
    measured: int
    estimated: int

    @property
    def diff(self) -> int:
        """estimated - measured (bytes)."""
        return self.estimated - self.measured

    @property
    def rel(self) -> float:
        """(estimated - measured) / measured (0 when both are 0)."""
        return self.diff / self.measured if self.measured else (0.0 if not self.estimated else float("inf"))


def compare(measurements: Sequence[RankMeasurement], **kwargs: Any) -> list[Row]:
    """Measured vs estimated bytes per key and total model states, per stage, rank and moment."""
    rows: list[Row] = []
    cache: dict[tuple[int, int], dict[str, dict[str, int]]] = {}
    for m in measurements:
        est = cache.setdefault((m.stage, m.world_size), estimated(m.stage, m.world_size, **kwargs))
        for moment in ("grads_end", "steady"):
            got = m.bytes.get(moment)
            if got is None:
                continue
            for key in (*MODEL_STATE_KEYS, "buffers/zero_buckets", "buffers/gathered_params"):
                rows.append(Row(m.stage, m.rank, moment, key, got.get(key, 0), est[moment].get(key, 0)))
            rows.append(Row(m.stage, m.rank, moment, "model_states (total)",
                            sum(got.get(k, 0) for k in MODEL_STATE_KEYS),
                            sum(est[moment].get(k, 0) for k in MODEL_STATE_KEYS)))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """The comparison as fixed-width text, one line per (stage, rank, moment, key)."""
    out = [(f"{'stage':>5} {'rank':>4} {'moment':9} {'key':24} {'measured B':>12} {'estimated B':>12} "
            f"{'est-meas B':>11} {'rel':>8}")]
    for r in rows:
        rel = f"{100 * r.rel:+.2f}%" if r.rel != float("inf") else "inf"
        out.append(f"{r.stage:>5} {r.rank:>4} {r.moment:9} {r.key:24} {r.measured:>12d} {r.estimated:>12d} "
                   f"{r.diff:>+11d} {rel:>8}")
    return "\n".join(out)


def available() -> str | None:
    """None when DeepSpeed, transformers and torch import; else the reason they do not."""
    try:
        import importlib.util

        for name in ("torch", "transformers", "deepspeed"):
            if importlib.util.find_spec(name) is None:
                return f"{name} is not installed"
    except (ImportError, ValueError) as exc:  # pragma: no cover - broken installs
        return str(exc)
    return None


def main(argv: list[str]) -> int:
    """``--worker SPEC OUT`` (internal) or a quick print of the measurements."""
    if argv[:1] == ["--worker"]:
        spec = json.loads(Path(argv[1]).read_text())
        Path(argv[2]).write_text(json.dumps(_worker(spec)))
        return 0
    import argparse

    ap = argparse.ArgumentParser(prog="python3 -m vramplan.tracing.deepspeed_cpu")
    ap.add_argument("--stages", default="1,2,3")
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--detail", type=int, default=12, help="storages listed per moment")
    a = ap.parse_args(argv)
    stages = [int(x) for x in a.stages.split(",")]
    for m in measure(stages, world_size=a.world_size, grad_accum=a.grad_accum, detail=a.detail):
        print(f"ZeRO-{m.stage} rank {m.rank}/{m.world_size} {m.optimizer} numel {m.numel} model {m.model_bytes}")
        print(f"  backward peak {m.backward_peak}")
        for moment in (x for x in MOMENTS if x in m.bytes):
            print(f"  {moment:9s} " + " ".join(f"{k.split('/')[-1]}={v}" for k, v in m.bytes[moment].items()))
            for nbytes, key, path in m.largest.get(moment, []):
                print(f"      {nbytes:>10d} {key:24s} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
