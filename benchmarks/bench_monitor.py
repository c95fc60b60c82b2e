"""Overhead of ``MemoryMonitor`` per training step, measured on the CPU.

Two measurements:

1. the monitor's own cost per step: ``begin_phase`` x3 + ``end_phase`` + ``step`` (with the hooks
   that ``watch`` installs doing the same on a real model), timed in isolation with the glibc malloc
   source (the CUDA source reads one allocator-stats dict instead; same order of cost);
2. a representative step: a small decoder (2 layers, hidden 256, seq 256, batch 2) trained on the
   CPU, run in alternating blocks of 3 steps with and without the monitor so that machine noise hits both; the
   monitor's own accounting (time spent inside its methods / wall time) is reported too.

The claim checked: the monitor costs under 1 % of the step time. A real GPU step of an LLM is
100 ms or more, far longer than this CPU step, so the fraction there is smaller still.

    python benchmarks/bench_monitor.py            # about a minute on 2 cores
    python benchmarks/bench_monitor.py --quick    # fewer steps (CI smoke)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramplan.monitor import MallocSource, MemoryMonitor, RssSource, default_source  # noqa: E402


def isolated_cost(n: int) -> float:
    """Median µs of one step's worth of monitor calls (no training work)."""
    source = MallocSource() if MallocSource.available() else RssSource()
    with tempfile.TemporaryDirectory() as tmp, MemoryMonitor(tmp, source=source, flight_recorder=False) as mon:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            mon.begin_phase("forward")
            mon.begin_phase("backward")
            mon.begin_phase("optimizer")
            mon.end_phase()
            mon.step()
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def representative(steps: int) -> dict[str, float]:
    """A/B step times of a small decoder on the CPU, with and without the monitor."""
    import torch
    import transformers

    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = transformers.LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=4, vocab_size=4096, max_position_embeddings=1024)
    model = transformers.LlamaForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def one_step() -> None:
        ids = torch.randint(0, cfg.vocab_size, (2, 256))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        one_step()
    plain: list[float] = []
    monitored: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, MemoryMonitor(tmp, source=default_source(), flight_recorder=False) as mon:
        for block in range(2 * max(1, steps // 3)):  # blocks of 3 steps, alternating, so load changes hit both
            watched = block % 2 == 1
            if watched:
                mon.watch(model, opt)
            for _ in range(3):
                t0 = time.perf_counter()
                one_step()
                if watched:
                    mon.step()
                (monitored if watched else plain).append(time.perf_counter() - t0)
            if watched:
                mon.unwatch()
        own = mon._overhead_s
    step = statistics.median(plain)
    return {
        "step_ms": step * 1e3,
        "monitored_step_ms": statistics.median(monitored) * 1e3,
        "ab_difference": statistics.median(monitored) / step - 1.0,
        "own_time_per_step_us": own / max(1, len(monitored)) * 1e6,
        "own_fraction": own / max(1e-9, sum(monitored)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (smoke test)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    iso = isolated_cost(200 if args.quick else 2000)
    rep = representative(3 if args.quick else 15)
    result = {"isolated_us_per_step": iso, **rep, "fraction_of_step": iso / (rep["step_ms"] * 1e3)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"monitor calls per step, isolated (median): {iso:.0f} µs")
    print(f"representative CPU step (2-layer decoder, 2x256 tokens): {rep['step_ms']:.1f} ms plain, "
          f"{rep['monitored_step_ms']:.1f} ms monitored (A/B median difference {rep['ab_difference']:+.2%}, noise included)")
    print(f"monitor's own time inside the loop: {rep['own_time_per_step_us']:.0f} µs per step = "
          f"{rep['own_fraction']:.3%} of the step")
    print(f"isolated cost / step time = {result['fraction_of_step']:.3%} (claim: < 1%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
