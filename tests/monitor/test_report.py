"""``vramplan report``: text, JSON, the PNG timeline (size and non-blank pixels), file safety."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from vramplan.cli.main import main
from vramplan.monitor import FakeSource, MemoryMonitor, Sample

GiB = 2**30


def _record(run_dir: Path, leak: bool, steps: int = 30, scenario: dict | None = None) -> None:
    samples = []
    for i in range(steps * 10):
        base = 20 * GiB + (i // 10) * 64 * 2**20 if leak else 20 * GiB
        samples.append(Sample(allocated_bytes=base, reserved_bytes=base + GiB, peak_allocated_bytes=base + 5 * GiB,
                              peak_reserved_bytes=base + 6 * GiB, device_used_bytes=base + 7 * GiB))
    with MemoryMonitor(run_dir, source=FakeSource(samples, capacity_bytes=80 * GiB), scenario=scenario) as mon:
        for _ in range(steps):
            mon.begin_phase("forward")
            mon.begin_phase("backward")
            mon.begin_phase("optimizer")
            mon.step()


def test_report_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _record(tmp_path, leak=True, scenario={"model": "llama-3.1-8b", "hardware": {"gpu": "a100-80g"},
                                           "parallel": {"engine": "single"}, "train": {"method": "lora"}})
    assert main(["report", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "leak: YES" in out and "0.06 MiB" not in out and "overall" in out
    assert main(["report", str(tmp_path), "--no-plot", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rank = data["ranks"][0]
    assert rank["leak"]["leak"] is True and rank["steps"] == 30
    assert isinstance(rank["measured"]["peak_reserved_bytes"], int)
    assert rank["comparison"]["overall"]["reserved"]["predicted_bytes"] > 0


def test_report_png_has_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.image

    _record(tmp_path, leak=False)
    assert main(["report", str(tmp_path)]) == 0
    png = tmp_path / "memory_timeline.png"
    assert "leak: no" in capsys.readouterr().out
    img = matplotlib.image.imread(io.BytesIO(png.read_bytes()), format="png")
    assert img.shape[:2] == (420, 1200)
    rgb = img[..., :3]
    not_white = (rgb < 0.95).any(axis=-1).mean()
    assert 0.01 < not_white < 0.6  # lines, text and axes drawn; not a blank or a filled canvas
    red = ((rgb[..., 0] > 0.7) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)).sum()
    assert red > 500  # the capacity line
    # never overwrite; --force replaces; -o elsewhere
    assert main(["report", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--force"]) == 0
    other = tmp_path / "t.png"
    assert main(["report", str(tmp_path), "-o", str(other)]) == 0 and other.stat().st_size > 10_000


def test_report_without_matplotlib_names_the_extra(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _record(tmp_path, leak=False, steps=3)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert 'pip install "vramplan[plot]"' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "memory_timeline.png").exists()


def test_report_bad_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("vramplan: error:") for line in err)


def test_report_reads_a_crashed_run_without_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _record(tmp_path, leak=False, steps=5)
    (tmp_path / "summary_rank0.json").unlink()
    log = tmp_path / "memory_rank0.jsonl"
    log.write_text(log.read_text() + '{"kind":"step","ra')  # cut mid-line by a kill
    assert main(["report", str(tmp_path), "--no-plot"]) == 0
    assert "5 steps" in capsys.readouterr().out
