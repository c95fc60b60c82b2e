"""``vramplan gpus``: the GPU catalog."""

from __future__ import annotations

import argparse
import json

from ...registry import list_gpus
from ...report.units import gib


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``gpus`` subcommand."""
    p = sub.add_parser("gpus", help="list the GPU catalog")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List GPUs: capacity as torch reports it, bf16/FlashAttention support, bandwidth, FLOP/s, interconnect."""
    gpus = list_gpus()
    if args.json:
        print(json.dumps([
            {
                "id": g.id, "name": g.display_name, "memory_bytes": g.memory_bytes, "bf16": g.bf16,
                "flash_attention": g.flash_attention, "memory_bandwidth_bytes_per_s": g.memory_bandwidth_bytes_per_s,
                "bf16_dense_flops": g.bf16_dense_flops, "interconnect": g.interconnect, "p2p": g.p2p,
            }
            for g in gpus
        ], indent=2))
        return 0
    print(f"{'id':<10}{'name':<26}{'capacity':>11} {'bf16':>5} {'FA2':>4} {'TB/s':>6} {'bf16 TFLOP/s':>13}  link")
    for g in gpus:
        link = g.interconnect + ("" if g.p2p else " (no P2P)")
        print(
            f"{g.id:<10}{g.display_name[:25]:<26}{gib(g.memory_bytes):>11} {'yes' if g.bf16 else 'no':>5} "
            f"{'yes' if g.flash_attention else 'no':>4} {g.memory_bandwidth_bytes_per_s / 1e12:>6.2f} "
            f"{g.bf16_dense_flops / 1e12:>13.0f}  {link}"
        )
    return 0
