"""Chart data: bars add up to the estimate, the sweeps' OOM boundary is where fitting stops."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vramplan.core.estimate import estimate_scenario
from vramplan.report.charts import (
    CAPACITY_COLOR,
    KEY_COLORS,
    chart_to_dict,
    estimate_charts,
    phase_chart,
    sweep_chart,
)

from .helpers import MGM_SCENARIOS, mgm_estimate


def test_every_key_has_a_distinct_colour_unlike_the_capacity_line() -> None:
    from vramplan.core.breakdown import KEYS

    assert set(KEY_COLORS) == set(KEYS)
    assert len(set(KEY_COLORS.values())) == len(KEYS)
    assert CAPACITY_COLOR not in KEY_COLORS.values()


@pytest.mark.parametrize("name", MGM_SCENARIOS)
def test_bars_sum_to_the_estimate(name: str) -> None:
    est = mgm_estimate(name)
    charts = estimate_charts(est)
    (bar,) = charts.breakdown.bars
    assert bar.total_bytes == est.device_used_bytes
    assert bar.capacity_bytes == est.capacity_bytes and bar.usable_bytes == est.usable_bytes
    assert not bar.fits  # both MGM reports are OOMs
    phases = phase_chart(est)
    assert [b.label for b in phases.bars] == ["forward", "backward", "optimizer step"]
    assert [b.total_bytes for b in phases.bars] == [p.device_used_bytes for p in est.phases]


def _fits(est, knob: str, value: int) -> bool:  # type: ignore[no-untyped-def]
    scn = est.scenario
    return estimate_scenario(replace(scn, train=replace(scn.train, **{knob: value}))).fits_gpu


@pytest.mark.parametrize("knob", ["micro_batch", "seq_len"])
def test_sweep_boundary_is_the_largest_fitting_value(knob: str) -> None:
    # MGM-2B stage 2 with ZeRO-3 + optimizer offload fits at small batches and runs out further up.
    est = mgm_estimate("mgm-2b-stage2")
    scn = est.scenario
    scn = replace(scn, parallel=replace(scn.parallel, zero=3, offload_optimizer=type(scn.parallel.offload_optimizer)("cpu")),
                  train=replace(scn.train, micro_batch=1))
    est = estimate_scenario(scn)
    chart = sweep_chart(est, knob)
    assert chart.max_fitting is not None
    assert _fits(est, knob, chart.max_fitting)
    assert not _fits(est, knob, chart.max_fitting + 1)
    values = [p.value for p in chart.points]
    assert values == sorted(values) and getattr(scn.train, knob) in values
    used = [p.device_used_bytes for p in chart.points]
    assert used == sorted(used), "device use grows with the knob"
    for p in chart.points:
        assert p.fits == (p.value <= chart.max_fitting)


def test_sweep_where_nothing_fits_has_no_boundary() -> None:
    chart = sweep_chart(mgm_estimate("mgm-8x7b-stage2"), "micro_batch")
    assert chart.max_fitting is None
    assert not any(p.fits for p in chart.points)
    data = chart_to_dict(chart)
    assert data["max_fitting"] is None and all(isinstance(p["device_used_bytes"], int) for p in data["points"])


def test_unknown_sweep_knob_is_a_user_error() -> None:
    from vramplan.core.errors import VramplanError

    with pytest.raises(VramplanError, match="micro_batch or seq_len"):
        sweep_chart(mgm_estimate("mgm-2b-stage2"), "grad_accum")
