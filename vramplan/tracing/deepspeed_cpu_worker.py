"""One real DeepSpeed rank on the CPU for ``deepspeed_cpu``: build the tiny model, train, take a census of live storages.

Run as ``python -m vramplan.tracing.deepspeed_cpu_worker SPEC OUT`` by ``deepspeed_cpu.measure`` (one process per
rank, environment set by the launcher); writes one JSON list of measurements per stage. See ``deepspeed_cpu``'s
docstring for the moments and how storages are filed under the breakdown keys. Imports torch, transformers and
deepspeed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .deepspeed_cpu import KEYS, TINY_BYTES, ds_config


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


def _hf_param_groups(model: Any) -> list[dict[str, Any]]:
    """HF Trainer's two optimizer groups (``Trainer.create_optimizer``): weights with decay, then biases and norm
    weights without (``get_decay_parameter_names``), each in ``named_parameters`` order. DeepSpeed flattens and
    partitions each group separately, which decides where the ZeRO-1/2 partition boundaries fall
    (``core/memory/zero_partition.py`` models the same layout)."""
    import re

    from torch import nn

    forbidden = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    layer_norm_params = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    decay, nodecay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no = id(p) in layer_norm_params or any(re.search(pat, name.lower()) for pat in forbidden)
        (nodecay if no else decay).append(p)
    return [g for g in ({"params": decay, "weight_decay": 0.0}, {"params": nodecay, "weight_decay": 0.0})
            if g["params"]]


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
        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=_hf_param_groups(model), config=ds_cfg)
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


def main(argv: list[str]) -> int:
    """``SPEC OUT``: run the spec's stages on this rank and write the measurements."""
    spec = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(_worker(spec)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
