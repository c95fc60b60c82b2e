"""The analytical model held to the trace: every cross-validation case within 8 %, the median within 3 %,
per phase and per component (errors as ``vramplan.tracing.compare`` defines them)."""

from __future__ import annotations

import copy
import statistics
from functools import cache

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from vramplan.adapters.hf_config import model_from_config
from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.tracing.compare import COMPONENTS, Comparison, compare_scenario

from .crossval_cases import CASES, TOWERS

pytestmark = pytest.mark.torch

WORST = 0.08
MEDIAN = 0.03
BY_NAME = {name: (config, scen) for name, config, scen in CASES}


@cache
def comparison(name: str) -> Comparison:
    """Trace case ``name`` once per session and compare it with the analytical estimate."""
    config, scen = BY_NAME[name]
    spec = model_from_config(config, name=name, resolve_tower=TOWERS.get)
    scn = scenario_from_dict(copy.deepcopy(scen), model=spec)
    return compare_scenario(scn, config, resolve_tower=TOWERS.get)


def test_there_are_at_least_30_cases_covering_the_required_kinds() -> None:
    names = " ".join(BY_NAME)
    assert len(CASES) >= 30
    for kind in ("llama", "mixtral", "qwen2moe", "llava", "mgm", "lora", "ckpt", "eager", "sdpa", "zero2", "zero3",
                 "fsdp2", "ddp", "stage1-projector-only", "tower-trains"):
        assert kind in names, kind


PEAK_MOMENT_DIFFERS = {
    "mixtral-zero2-sv": (
        "backward: the trace peaks at the start of backward (no gradient partition yet), the estimate at the top "
        "layer, where the most loaded rank's ZeRO-2 partition holds the straddling fused expert weight whole "
        "(2,419,200 elements against Psi/N = 1,292,096, as real DeepSpeed does); the totals agree within 1.2 %, "
        "the split into components cannot (docs/tracing.md, known differences)"
    ),
}
"""Cases whose phase totals agree but whose analytic and traced peaks fall at different moments of the phase, so
their component split is compared at two different moments. Their totals are still asserted; the component
check is expected to fail (strict: it must be revisited once the two peaks coincide)."""


def _case_params() -> list[object]:
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=PEAK_MOMENT_DIFFERS[n]))
            if n in PEAK_MOMENT_DIFFERS else n for n in BY_NAME]


@pytest.mark.parametrize("name", _case_params())
def test_case_within_worst_tolerance(name: str) -> None:
    c = comparison(name)
    for p in c.phases:
        assert abs(p.error) <= WORST, f"{name} {p.phase}: analytic {p.analytic_bytes} traced {p.traced_bytes}"
        for comp in COMPONENTS:
            assert abs(p.component_error(comp)) <= WORST, f"{name} {p.phase} {comp}: {p.components[comp]}"


@pytest.mark.parametrize("name", sorted(PEAK_MOMENT_DIFFERS))
def test_phase_totals_where_the_peak_moment_differs(name: str) -> None:
    c = comparison(name)
    for p in c.phases:
        assert abs(p.error) <= WORST, f"{name} {p.phase}: analytic {p.analytic_bytes} traced {p.traced_bytes}"


@pytest.mark.parametrize("phase", ["forward", "backward", "optimizer"])
def test_median_within_tolerance_per_phase_and_component(phase: str) -> None:
    i = ("forward", "backward", "optimizer").index(phase)
    results = [comparison(name) for name in BY_NAME]
    assert statistics.median(abs(c.phases[i].error) for c in results) <= MEDIAN
    for comp in COMPONENTS:
        assert statistics.median(abs(c.phases[i].component_error(comp)) for c in results) <= MEDIAN, comp


def test_traced_parameter_bytes_equal_the_analytic_ones_exactly() -> None:
    """Parameters are counted from the same config: a single-GPU bf16 trace holds 2 B per parameter."""
    c = comparison("llama-single-bf16")
    fwd_a = next(p for p in c.analytic.phases if p.phase == "optimizer").breakdown
    fwd_t = next(p for p in c.traced.phases if p.phase == "optimizer").breakdown
    assert fwd_t["model_states/params"] - fwd_a["model_states/params"] < 64 * 1024  # RoPE buffers, rounding
