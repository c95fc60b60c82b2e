"""Real DeepSpeed ZeRO on the CPU against vramplan's model-state and bucket accounting, per stage and rank.

Launches ``--world-size`` real DeepSpeed ranks on this machine (CPU accelerator, gloo; see
``vramplan/tracing/deepspeed_cpu.py``), trains a tiny Llama (hidden 256, 2 layers, vocab 1024, bf16, AdamW)
under each ZeRO stage, and prints measured vs estimated bytes per breakdown key at two moments:
``grads_end`` (autograd finished, DeepSpeed's backward epilogue about to run: the estimate's end of backward)
and ``steady`` (between steps: the estimate's forward). Writes nothing unless ``--json FILE`` is given.

Run: ``python3 benchmarks/deepspeed_cpu_states.py [--stages 1,2,3] [--world-size 2] [--grad-accum 1]
[--reduce-bucket-size N] [--json out.json]`` (about 40 s for three stages on two ranks on two cores; the
first DeepSpeed import may take longer).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramplan.tracing import deepspeed_cpu as dsc


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="1,2,3", help="comma-separated ZeRO stages (0 works too)")
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--reduce-bucket-size", type=int, default=None,
                    help="elements; default: HF's auto value hidden^2 (DeepSpeed's own default is 5e8)")
    ap.add_argument("--json", default=None, help="write measurements and rows to this file")
    a = ap.parse_args(argv)
    reason = dsc.available()
    if reason:
        print(f"deepspeed_cpu_states: {reason}")
        return 2
    stages = [int(x) for x in a.stages.split(",")]
    overrides = {"reduce_bucket_size": a.reduce_bucket_size} if a.reduce_bucket_size else None
    ms = dsc.measure(stages, world_size=a.world_size, grad_accum=a.grad_accum, zero_overrides=overrides)
    rows = dsc.compare(ms, grad_accum=a.grad_accum, reduce_bucket_size=a.reduce_bucket_size)
    m0 = ms[0]
    print(f"DeepSpeed on the CPU, tiny Llama ({m0.numel:,} params, {m0.model_bytes:,} B as built), world "
          f"{a.world_size}, bf16, AdamW, grad_accum {a.grad_accum}; bytes per rank (est-meas > 0: vramplan over)")
    print(dsc.format_table(rows))
    print("\nInside engine.backward (last step): census at its start, peak of storages allocated from "
          "deepspeed/runtime/zero frames, peak of all storages allocated in it")
    for m in ms:
        print(f"  ZeRO-{m.stage} rank {m.rank} {m.optimizer}: {m.backward_peak}")
    if a.json:
        Path(a.json).write_text(json.dumps({"measurements": [asdict(m) for m in ms],
                                            "rows": [asdict(r) for r in rows]}, indent=1))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
