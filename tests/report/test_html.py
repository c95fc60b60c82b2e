"""Self-contained HTML reports of the MGM scenarios: verdict, breakdown keys, numbers, charts, embedded data, no URLs."""

from __future__ import annotations

import json
import re

import pytest

from vramplan.report.html import render_estimate_html
from vramplan.report.json_report import estimate_to_dict
from vramplan.report.units import gib_num

from .helpers import MGM_SCENARIOS, mgm_data, mgm_estimate

FETCHING = re.compile(r"""\bsrc\s*=|url\(|@import|<link\b|<iframe\b|<img\b|<object\b|<embed\b""", re.IGNORECASE)
"""Anything that makes a browser fetch a resource (anchors are navigations on a click, not fetches)."""


def embedded(page: str) -> dict:  # type: ignore[type-arg]
    m = re.search(r'<script type="application/json" id="vramplan-data">(.*?)</script>', page, re.DOTALL)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert not FETCHING.search(page), FETCHING.search(page)
    assert "<script src" not in page
    assert "<style>" in page


@pytest.mark.parametrize("name", MGM_SCENARIOS)
def test_estimate_report(name: str) -> None:
    est = mgm_estimate(name)
    page = render_estimate_html(est, est.scenario.model.name)
    assert_self_contained(page)
    assert "http" not in page, "an estimate report has no links at all"
    assert 'data-verdict="OOM"' in page and "<b>OOM</b>" in page
    assert f"needs {gib_num(est.device_used_bytes)} GiB per GPU" in page
    peak = est.peak.breakdown
    for key, value in peak.items.items():
        if value:
            assert f"<code>{key}</code>" in page, key
            assert gib_num(value) in page, key
    assert page.count("<svg") == 4
    for chart in ("breakdown", "phases", "micro_batch", "seq_len"):
        assert f'data-chart-name="{chart}"' in page
    assert 'class="capacity"' in page and 'class="usable"' in page
    data = embedded(page)
    assert data["kind"] == "estimate"
    assert data["estimate"] == json.loads(json.dumps(estimate_to_dict(est, est.scenario.model.name)))
    bar = data["charts"]["breakdown"]["bars"][0]
    assert bar["total_bytes"] == est.device_used_bytes and bar["capacity_bytes"] == est.capacity_bytes
    assert data["charts"]["micro_batch"]["points"], "sweep points embedded"


def test_text_is_escaped() -> None:
    from dataclasses import replace

    est = mgm_estimate("mgm-2b-stage2")
    scn = est.scenario
    evil = replace(scn, model=replace(scn.model, name="<script>alert(1)</script>"))
    from vramplan.core.estimate import estimate_scenario

    page = render_estimate_html(estimate_scenario(evil))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_plan_report_mgm_2b() -> None:
    from vramplan import api
    from vramplan.report.html_plan import render_plan_html

    result = api.plan_from_dict(mgm_data("mgm-2b-stage2"), top=5)
    assert result.plans
    page = render_plan_html(result, "mgm-2b")
    assert_self_contained(page)
    assert 'data-verdict="PLANS"' in page and 'data-verdict="OOM"' in page  # plans fit; your setup does not
    assert page.count('<span class="rank">') == len(result.plans)
    best = result.plans[0]
    assert gib_num(best.estimate.device_used_bytes) in page
    assert "plan #1" in page and "your setup" in page
    data = embedded(page)
    assert data["kind"] == "plan"
    assert data["plan"]["plans"][0]["estimate"]["device_used_bytes"] == best.estimate.device_used_bytes
    bars = data["charts"]["breakdown"]["bars"]
    assert bars[0]["label"] == "your setup" and len(bars) == 1 + len(result.plans)


def test_plan_report_when_nothing_fits() -> None:
    from vramplan import api
    from vramplan.report.html_plan import render_plan_html

    result = api.plan_from_dict(mgm_data("mgm-8x7b-stage2"), methods=["full"], top=5)
    assert not result.plans
    nearest = api.nearest_options(result)
    page = render_plan_html(result, "mgm-8x7b", nearest)
    assert_self_contained(page)
    assert 'data-verdict="NO PLAN"' in page and "No plan fits" in page
    assert "Nearest options" in page


def test_doctor_report_mgm_2b(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from vramplan.doctor import run_doctor
    from vramplan.report.html_doctor import render_doctor_html

    script = Path(__file__).parents[1] / "fixtures/mgm/scripts/gemma/train/stage_1_2_full_gemma_v2b_336_hr_768.sh"
    report = run_doctor(script=script, gpus="4xrtx4090")
    page = render_doctor_html(report)
    assert_self_contained(page)
    assert 'data-verdict="OOM"' in page
    assert report.prescription.best is not None
    assert 'data-verdict="FIX"' in page and gib_num(report.prescription.best.peak_bytes) in page
    for finding in report.findings:
        assert finding.rule_id in page
    links = re.findall(r'<a href="([^"]+)"', page)
    assert links and all(link.startswith("https://") for link in links)  # evidence: navigations, not fetches
    data = embedded(page)
    assert data["kind"] == "doctor" and data["doctor"]["verdict"]["fits"] is False
    assert page.count("<svg") == 4
