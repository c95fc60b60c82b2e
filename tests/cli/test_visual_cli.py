"""``--html FILE`` and ``--png DIR`` on estimate, plan and doctor: files with content, nothing half-written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vramplan.cli.main import main

MGM_2B_SCRIPT = Path(__file__).parents[1] / "fixtures/mgm/scripts/gemma/train/stage_1_2_full_gemma_v2b_336_hr_768.sh"


def test_estimate_html_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason='PNG charts need the "plot" extra')
    html, png = tmp_path / "report.html", tmp_path / "charts"
    code = main(["estimate", "mgm-2b-stage2", "--html", str(html), "--png", str(png)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Verdict: OOM" in out  # the text report still goes to stdout
    page = html.read_text(encoding="utf-8")
    assert 'data-verdict="OOM"' in page and "activations/logits_loss" in page
    assert sorted(p.name for p in png.iterdir()) == ["breakdown.png", "phases.png", "sweep_micro_batch.png",
                                                     "sweep_seq_len.png"]
    assert all(p.stat().st_size > 10_000 for p in png.iterdir())
    assert f"wrote {html}" in err


def test_nothing_written_when_a_picture_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    html, png = tmp_path / "report.html", tmp_path / "charts"
    code = main(["estimate", "mgm-2b-stage2", "--html", str(html), "--png", str(png)])
    _, err = capsys.readouterr()
    assert code == 2
    assert 'pip install "vramplan[plot]"' in err and "Traceback" not in err
    assert not html.exists() and not png.exists()


def test_html_into_a_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["estimate", "mgm-2b-stage2", "--html", str(tmp_path / "no" / "r.html")])
    _, err = capsys.readouterr()
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_plan_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "plan.html"
    code = main(["plan", "mgm-2b-stage2", "--html", str(html)])
    _, err = capsys.readouterr()
    assert code == 0, err
    page = html.read_text(encoding="utf-8")
    assert 'data-verdict="PLANS"' in page and "plan #1" in page


def test_doctor_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "doctor.html"
    code = main(["doctor", "--script", str(MGM_2B_SCRIPT), "--gpus", "4xrtx4090", "--html", str(html)])
    _, err = capsys.readouterr()
    assert code == 1, err  # the setup OOMs
    page = html.read_text(encoding="utf-8")
    assert 'data-verdict="OOM"' in page and 'data-verdict="FIX"' in page


def _embedded(page: str) -> dict:
    import json
    import re

    m = re.search(r'<script type="application/json" id="vramplan-data">(.*?)</script>', page, re.DOTALL)
    assert m is not None
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_sizing_html_and_png_match_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason='PNG charts need the "plot" extra')
    args = ["plan", "mgm-2b", "--gpu-type", "rtx4090", "--compare", "a100-80g"]
    assert main([*args, "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)["sizing"]
    html, png = tmp_path / "sizing.html", tmp_path / "charts"
    code = main([*args, "--html", str(html), "--png", str(png)])
    _, err = capsys.readouterr()
    assert code == 0, err
    page = html.read_text(encoding="utf-8")
    data = _embedded(page)
    assert data["kind"] == "sizing" and data["plan"]["sizing"] == rows
    bars = data["charts"]["sizing"]["bars"]
    fitting = [r for r in rows if r["count"] is not None]
    assert len(bars) == len(fitting) >= 2  # one bar per GPU type/method with a count
    for bar, row in zip(bars, fitting):
        assert bar["total_bytes"] <= bar["usable_bytes"]  # the plan shown fits the GPU it names
        assert bar["label"].startswith(f"{row['count']}x ")
    assert "GPUs needed" in page and "NVIDIA GeForce RTX 4090" in page
    assert [p.name for p in png.iterdir()] == ["sizing.png"]


def test_plan_with_compare_puts_the_sizing_in_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "plan.html"
    code = main(["plan", "mgm-2b-stage2", "--gpus", "4xrtx4090", "--compare", "a100-80g", "--html", str(html)])
    _, err = capsys.readouterr()
    assert code == 0, err
    page = html.read_text(encoding="utf-8")
    data = _embedded(page)
    assert {s["gpu"] for s in data["plan"]["sizing"]} == {"a100-80g"}
    assert all(s["count"] == 1 for s in data["plan"]["sizing"])  # MGM-2B full FT fits one 80 GB card
    assert 'data-chart-name="sizing"' in page and 'data-verdict="PLANS"' in page


def test_sizing_png_with_nothing_that_fits_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason='PNG charts need the "plot" extra')
    html, png = tmp_path / "s.html", tmp_path / "charts"
    code = main(["plan", "mgm-8x7b", "--gpu-type", "rtx4090", "--method", "full", "--max-gpus", "2", "--host-ram", "64GB",
                 "--html", str(html), "--png", str(png)])
    _, err = capsys.readouterr()
    assert code == 2 and "no GPU type has a count that fits" in err and len(err.strip().splitlines()) == 1
    assert not html.exists() and not png.exists()
