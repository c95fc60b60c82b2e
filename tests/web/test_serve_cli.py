"""``vramplan serve`` as a user starts it: a subprocess on 127.0.0.1, a free port, stopped by the test."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("flask", reason='the web page needs the "web" extra (pip install "vramplan[web]")')

ROOT = Path(__file__).parents[2]


def test_serve_binds_loopback_and_answers() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "vramplan", "serve", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (seen and "serving on" in seen[-1]):
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
        m = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", seen[-1] if seen else "")
        assert m, "no 'serving on' line in:\n" + "".join(seen)
        base = f"http://127.0.0.1:{m.group(1)}"
        with urllib.request.urlopen(f"{base}/api/options", timeout=30) as resp:
            options = json.loads(resp.read())
        assert "mgm-2b" in {p["id"] for p in options["presets"]}
        req = urllib.request.Request(f"{base}/api/estimate", data=json.dumps({"base": "mgm-2b-stage2"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert json.loads(resp.read())["verdict"] == "OOM"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def test_serve_rejects_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    from vramplan.cli.main import main

    assert main(["serve", "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "--port 70000" in err and len(err.strip().splitlines()) == 1
