"""Per-phase aggregation of memory samples within one optimizer step (micro-steps of gradient accumulation)."""

from __future__ import annotations

from .sources import Sample


def max_known(a: int | None, b: int | None) -> int | None:
    """The larger of two readings, ignoring unknowns (None)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


class PhaseAggregate:
    """One phase of one step, aggregated over micro-steps (gradient accumulation)."""

    __slots__ = ("count", "duration_s", "allocated", "reserved", "peak_allocated", "peak_reserved", "device_used",
                 "host_rss")

    def __init__(self) -> None:
        self.count = 0
        self.duration_s = 0.0
        self.allocated: int | None = None
        self.reserved: int | None = None
        self.peak_allocated: int | None = None
        self.peak_reserved: int | None = None
        self.device_used: int | None = None
        self.host_rss: int | None = None

    def add(self, sample: Sample, duration: float) -> None:
        """Fold one micro-step's end-of-phase sample and its duration in."""
        self.count += 1
        self.duration_s += duration
        self.allocated, self.reserved = sample.allocated_bytes, sample.reserved_bytes
        self.peak_allocated = max_known(max_known(self.peak_allocated, sample.peak_allocated_bytes), sample.allocated_bytes)
        self.peak_reserved = max_known(max_known(self.peak_reserved, sample.peak_reserved_bytes), sample.reserved_bytes)
        self.device_used = max_known(self.device_used, sample.device_used_bytes)
        self.host_rss = max_known(self.host_rss, sample.host_rss_bytes)
