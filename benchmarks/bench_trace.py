"""Time and peak host RSS of ``--estimator trace`` on real-size presets, and its numbers next to the analytic ones.

Each configuration runs in a fresh Python process (``python3 -m vramplan estimate ... --estimator trace
--json``) so that wall time includes the torch/transformers imports and peak RSS is the whole process's
(``resource.getrusage(RUSAGE_CHILDREN)``). Targets (issue 5): Mixtral-8x7B one configuration <= 15 s and
<= 1 GB RSS on a 2-core CPU machine.

Run: ``python3 benchmarks/bench_trace.py [--quick]`` (``--quick``: the two timing targets only).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GiB = 2**30

TIMING = [
    ("Mixtral-8x7B, 1 GPU, bf16, b1 s2048", ["mixtral-8x7b", "--gpus", "1xh100-80g", "--precision", "bf16-pure",
                                              "--micro-batch", "1", "--seq-len", "2048", "--grad-ckpt", "none"]),
    ("Llama-3.1-8B, 1 GPU, bf16, b1 s2048", ["llama-3.1-8b", "--gpus", "1xh100-80g", "--precision", "bf16-pure",
                                              "--micro-batch", "1", "--seq-len", "2048", "--grad-ckpt", "none"]),
]
PRESETS = [
    ("MGM-2B stage 2 (built-in: ZeRO-2, 4x RTX 4090, b8 s2048, ckpt)", ["mgm-2b-stage2"]),
    ("MGM-2B, ZeRO-2, 4x RTX 4090, b1 s2048, ckpt", ["mgm-2b", "--gpus", "4xrtx4090", "--micro-batch", "1"]),
    ("MGM-2B-HD stage 2 (built-in: ZeRO-2 + offload, 10x RTX 3090, b4 s4096)", ["mgm-2b-hd-stage2"]),
    ("Mixtral-8x7B, ZeRO-3, 8x H100, b1 s2048, ckpt", ["mixtral-8x7b", "--gpus", "8xh100-80g", "--zero", "3",
                                                       "--micro-batch", "1", "--seq-len", "2048"]),
    ("Mixtral-8x7B, ZeRO-3, 8x H100, b4 s4096, no ckpt", ["mixtral-8x7b", "--gpus", "8xh100-80g", "--zero", "3",
                                                           "--micro-batch", "4", "--seq-len", "4096", "--grad-ckpt", "none"]),
    ("Mixtral-8x7B, FSDP2, 8x H100, b1 s2048, ckpt", ["mixtral-8x7b", "--gpus", "8xh100-80g", "--engine", "fsdp2",
                                                      "--micro-batch", "1", "--seq-len", "2048"]),
    ("MGM-8x7B stage 2 (built-in: ZeRO-3, 6x RTX 4090, b4 s2048, ckpt)", ["mgm-8x7b-stage2"]),
]


def run(args: list[str], estimator: str) -> tuple[dict, float, float]:
    """(JSON report, wall seconds, peak RSS MiB of the child) of one ``vramplan estimate``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vramplan", "estimate", *args, "--estimator", estimator, "--json"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"vramplan estimate {' '.join(args)} failed: {proc.stderr.strip()}")
    rss = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return json.loads(proc.stdout), wall, rss


def main(argv: list[str]) -> int:
    print("Timing (fresh process each; imports included):")
    for label, args in TIMING:
        report, wall, rss = run(args, "trace")
        peak = report["peak_allocated_bytes"] / GiB
        print(f"  {label:<44} {wall:6.1f} s  peak RSS {rss:6.0f} MiB  traced peak allocated {peak:7.2f} GiB")
    if "--quick" in argv:
        return 0
    print("\nPresets: nvidia-smi peak per GPU (GiB) and the peak phase, analytic vs traced:")
    print(f"  {'setup':<72} {'analytic':>9} {'traced':>9} {'diff':>7}  phases (alloc. GiB, a / t)")
    for label, args in PRESETS:
        a, _w, _r = run(args, "analytic")
        t, wall, _r = run(args, "trace")
        diff = (a["device_used_bytes"] - t["device_used_bytes"]) / t["device_used_bytes"]
        phases = ", ".join(f"{ph[:3]} {a['phases'][ph]['allocated_bytes'] / GiB:.2f}/{t['phases'][ph]['allocated_bytes'] / GiB:.2f}"
                           for ph in ("forward", "backward", "optimizer"))
        print(f"  {label:<72} {a['device_used_bytes'] / GiB:>9.2f} {t['device_used_bytes'] / GiB:>9.2f} "
              f"{100 * diff:>+6.2f}%  {phases}  ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
