"""Leak detection on a monitored run: the trend test on post-step memory, and the allocation sites.

Owns:

- ``leak_verdict``: the post-step ``allocated_bytes`` of a run's step records ->
  ``vramplan.core.trend.detect_growth`` (Mann–Kendall + Theil–Sen + persistence; see there);
- ``new_allocation_sites``: two ``torch.cuda.memory._snapshot()`` dicts (taken after the warm-up
  and at the end, with memory history on) -> the blocks alive at the end that did not exist at the
  baseline, grouped by the innermost user frame that allocated them, largest first. Pure dict
  logic, tested on the CPU with synthetic snapshots.

No torch import here.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..core.trend import DEFAULT_MIN_GROWTH_BYTES, GrowthVerdict, detect_growth
from .oom import _site


def leak_verdict(step_records: Iterable[Mapping[str, Any]], *, field: str = "allocated_bytes",
                 warmup: int | None = None, min_growth_bytes: int = DEFAULT_MIN_GROWTH_BYTES,
                 alpha: float = 0.01) -> GrowthVerdict:
    """Trend test on ``field`` of the step records (records missing it are skipped)."""
    steps: list[int] = []
    values: list[int] = []
    for rec in step_records:
        value = rec.get(field)
        if value is None:
            continue
        steps.append(int(rec["step"]))
        values.append(int(value))
    return detect_growth(steps, values, warmup=warmup, min_growth_bytes=min_growth_bytes, alpha=alpha)


def _active_blocks(snapshot: Mapping[str, Any], device: int | None = None) -> dict[tuple[int, int], list[Any]]:
    """(address, size) -> frames of every active block."""
    out: dict[tuple[int, int], list[Any]] = {}
    for seg in snapshot.get("segments", []):
        if device is not None and seg.get("device", device) != device:
            continue
        address = int(seg.get("address", 0))
        for block in seg.get("blocks", []):
            size = int(block.get("size", 0))
            start = int(block.get("address", address))
            address = start + size
            if block.get("state") == "active_allocated":
                out[(start, size)] = list(block.get("frames") or [])
    return out


def new_allocation_sites(baseline: Mapping[str, Any] | None, current: Mapping[str, Any], *,
                         device: int | None = None, top: int = 10) -> list[dict[str, Any]]:
    """Sites of blocks alive in ``current`` but not in ``baseline``: [{site, bytes, blocks}], largest first."""
    before = _active_blocks(baseline, device) if baseline else {}
    sites: dict[str, dict[str, Any]] = {}
    for key, frames in _active_blocks(current, device).items():
        if key in before:
            continue
        site = _site(frames)
        entry = sites.setdefault(site, {"site": site, "bytes": 0, "blocks": 0})
        entry["bytes"] += key[1]
        entry["blocks"] += 1
    return sorted(sites.values(), key=lambda e: -e["bytes"])[:top]
