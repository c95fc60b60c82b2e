"""Human-readable numbers: GiB (1024^3) for memory, decimal B/M for parameter counts."""

from __future__ import annotations

from ..core.units import GiB, MiB


def gib(value: int, digits: int = 2) -> str:
    """Bytes as ``12.34 GiB``."""
    return f"{value / GiB:.{digits}f} GiB"


def gib_num(value: int, digits: int = 2) -> str:
    """Bytes as ``12.34`` (GiB, no unit)."""
    return f"{value / GiB:.{digits}f}"


def mib(value: int) -> str:
    """Bytes as ``512 MiB``."""
    return f"{value / MiB:.0f} MiB"


def params(count: int) -> str:
    """Parameter count in decimal units (6.74B, 303.5M)."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.2f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.1f}M"
    if count >= 1_000:
        return f"{count / 1e3:.1f}K"
    return str(count)
