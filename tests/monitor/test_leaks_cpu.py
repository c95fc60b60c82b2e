"""Leak detection on real CPU training loops, measured by the glibc malloc source (torch tensors are malloc'ed).

A deterministic leak (a tensor kept per step) is caught; a steady loop and a loop whose sequence
length varies every step raise no alarm.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from vramplan.monitor import MallocSource, MemoryMonitor  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.skipif(not MallocSource.available(), reason="needs glibc mallinfo2")]

STEPS = 40


def _train(run_dir: Path, mode: str) -> dict:
    torch.manual_seed(0)
    rng = random.Random(0)
    vocab, dim = 512, 64
    model = torch.nn.Sequential(torch.nn.Embedding(vocab, dim), torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(),
                                torch.nn.Linear(4 * dim, vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    kept = []
    with MemoryMonitor(run_dir, source=MallocSource()) as mon:
        mon.watch(model, opt)
        for _ in range(STEPS):
            seq = rng.randint(8, 256) if mode == "varying" else 128
            ids = torch.randint(0, vocab, (4, seq))
            logits = model(ids)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids.reshape(-1))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if mode == "leak":
                kept.append(torch.ones(256 * 1024))  # 1 MiB kept per step
            mon.step()
    assert mon.summary is not None
    return mon.summary


def test_deterministic_leak_is_caught(tmp_path: Path) -> None:
    summary = _train(tmp_path, "leak")
    leak = summary["leak"]
    assert leak["leak"], leak["reason"]
    assert 0.8 * 2**20 <= leak["slope_bytes_per_step"] <= 1.3 * 2**20
    assert leak["onset_step"] is not None and leak["onset_step"] <= 8


def test_steady_loop_raises_no_alarm(tmp_path: Path) -> None:
    leak = _train(tmp_path, "steady")["leak"]
    assert not leak["leak"], leak["reason"]


def test_varying_sequence_lengths_raise_no_alarm(tmp_path: Path) -> None:
    summary = _train(tmp_path, "varying")
    assert not summary["leak"]["leak"], summary["leak"]["reason"]
    # the phases really saw different activation sizes
    phases = summary["measured"]["phases"]
    assert set(phases) == {"forward", "backward", "optimizer"}
