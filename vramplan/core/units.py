"""Byte units. Every number in the core is an ``int`` of bytes; formatting happens in ``vramplan.report``."""

from __future__ import annotations

KiB = 1024
MiB = 1024**2
GiB = 1024**3
KB = 1000
MB = 1000**2
GB = 1000**3


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer ceiling division (how many ``denominator``-sized pieces cover ``numerator``)."""
    return -(-numerator // denominator)


def round_up(value: int, multiple: int) -> int:
    """Round ``value`` up to a multiple of ``multiple``."""
    return ceil_div(value, multiple) * multiple


def shard(numel: int, degree: int) -> int:
    """Elements one rank holds when ``numel`` is split over ``degree`` ranks.

    DeepSpeed and FSDP pad the flat buffer to a multiple of the world size, so each rank holds
    ceil(numel / degree) elements (stage_1_and_2.py flatten-with-padding; FSDP FlatParameter).
    """
    if degree <= 1:
        return numel
    return ceil_div(numel, degree)
