"""PNG charts (extra ``plot``) of the MGM scenarios, checked as pictures: size, ink, the capacity line's red."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("matplotlib", reason='the PNG charts need the "plot" extra (pip install "vramplan[plot]")')

from vramplan.core.errors import VramplanError
from vramplan.report.charts import (
    CAPACITY_COLOR,
    FIT_COLOR,
    KEY_COLORS,
    OOM_COLOR,
    estimate_charts,
)
from vramplan.report.plots import PNG_NAMES, render_pngs, write_pngs

from .helpers import (
    MGM_SCENARIOS,
    count_color,
    mgm_estimate,
    non_white_fraction,
    png_pixels,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", params=MGM_SCENARIOS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, object, dict[str, bytes]]:
    est = mgm_estimate(request.param)
    return request.param, est, render_pngs(estimate_charts(est))


def test_four_pngs_with_content(rendered, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name, _, images = rendered
    assert set(images) == set(PNG_NAMES.values())
    paths = write_pngs(images, tmp_path / name)
    assert sorted(p.name for p in paths) == sorted(PNG_NAMES.values())
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), path
        assert len(data) > 15_000, f"{path} is suspiciously small"
        pixels = png_pixels(data)
        height, width = pixels.shape[:2]
        assert width >= 800 and height >= 400, (path, width, height)
        assert 0.04 < non_white_fraction(pixels) < 0.8, f"{path}: blank or solid"
        assert count_color(pixels, CAPACITY_COLOR, 0.04) > 200, f"{path}: no capacity line"


def test_breakdown_shows_the_peak_components(rendered) -> None:  # type: ignore[no-untyped-def]
    _, est, images = rendered
    pixels = png_pixels(images["breakdown.png"])
    peak = est.peak.breakdown
    largest = max((k for k in KEY_COLORS), key=lambda k: peak[k])
    assert count_color(pixels, KEY_COLORS[largest], 0.02) > 2000, f"no area in the colour of {largest}"


def test_sweeps_mark_points_as_oom(rendered) -> None:  # type: ignore[no-untyped-def]
    _, _, images = rendered
    for name in ("sweep_micro_batch.png", "sweep_seq_len.png"):
        pixels = png_pixels(images[name])
        assert count_color(pixels, OOM_COLOR, 0.04) > 300, name


def test_fitting_points_are_green_when_they_fit() -> None:
    from dataclasses import replace

    from vramplan.core.estimate import estimate_scenario
    from vramplan.core.scenario import Offload

    est = mgm_estimate("mgm-2b-stage2")
    scn = est.scenario
    scn = replace(scn, parallel=replace(scn.parallel, zero=3, offload_optimizer=Offload.CPU),
                  train=replace(scn.train, micro_batch=1))
    images = render_pngs(estimate_charts(estimate_scenario(scn)))
    pixels = png_pixels(images["sweep_micro_batch.png"])
    assert count_color(pixels, FIT_COLOR, 0.04) > 100
    assert count_color(pixels, OOM_COLOR, 0.04) > 100


def test_missing_matplotlib_names_the_extra(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(VramplanError, match=r'pip install "vramplan\[plot\]"'):
        render_pngs(estimate_charts(mgm_estimate("mgm-2b-stage2")))


def test_png_dir_whose_parent_is_missing_is_a_user_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VramplanError, match="does not exist"):
        write_pngs({"a.png": PNG_SIGNATURE}, tmp_path / "no" / "such")
