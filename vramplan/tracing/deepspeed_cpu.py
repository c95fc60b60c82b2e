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
comparison table). This module is the launcher and the comparison; each rank runs ``deepspeed_cpu_worker``
(the census), which alone imports torch, transformers and deepspeed.
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
            procs.append((subprocess.Popen([sys.executable, "-m", "vramplan.tracing.deepspeed_cpu_worker",
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
            if got is None and moment == "grads_end":  # ZeRO-0 has no epilogue: after engine.backward stands in
                got = m.bytes.get("backward")
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
    """A quick print of the measurements (the ranks themselves run ``deepspeed_cpu_worker``)."""
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
