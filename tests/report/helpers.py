"""Shared helpers of the picture tests: the MGM estimates, and reading PNG files back as pixels."""

from __future__ import annotations

import io
from typing import Any

from vramplan import estimate_from_dict
from vramplan.core.estimate import Estimate
from vramplan.registry.scenario_presets import builtin_scenario

MGM_SCENARIOS = ("mgm-2b-stage2", "mgm-8x7b-stage2")


def mgm_data(name: str) -> dict[str, Any]:
    """A built-in MGM scenario as a scenario dict."""
    data = builtin_scenario(name)
    data.pop("name", None)
    data.pop("description", None)
    return data


def mgm_estimate(name: str) -> Estimate:
    """The estimate of a built-in MGM scenario."""
    return estimate_from_dict(mgm_data(name))


def png_pixels(data: bytes) -> Any:
    """RGB(A) pixels of a PNG as a numpy array of floats in [0, 1] (height, width, channels)."""
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(data), format="png")


def hex_rgb(color: str) -> tuple[float, float, float]:
    """'#e00000' -> (0.878, 0.0, 0.0)."""
    return tuple(int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


def count_color(pixels: Any, color: str, tolerance: float = 0.06) -> int:
    """Pixels within ``tolerance`` (per channel) of ``color``."""
    import numpy as np

    r, g, b = hex_rgb(color)
    rgb = pixels[..., :3]
    close = (np.abs(rgb[..., 0] - r) <= tolerance) & (np.abs(rgb[..., 1] - g) <= tolerance) & (
        np.abs(rgb[..., 2] - b) <= tolerance)
    return int(close.sum())


def non_white_fraction(pixels: Any) -> float:
    """Share of pixels that are not (near) white."""
    rgb = pixels[..., :3]
    return float((rgb.min(axis=-1) < 0.94).mean())
