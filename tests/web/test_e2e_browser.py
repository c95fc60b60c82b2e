"""End to end in a real headless browser: Debian's chromium driven by Playwright against ``vramplan serve``'s app.

The server binds 127.0.0.1 on a free port in a thread and is shut down by the fixture; the browser gets
the flags that keep it off the network (no background networking, no component updates, no sync).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="the browser test needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); .ci/run installs it",
)

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
FIXTURES = Path(__file__).parents[1] / "fixtures" / "mgm" / "scripts"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    from werkzeug.serving import make_server

    from vramplan.web import create_app

    srv = make_server("127.0.0.1", 0, create_app(), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, name="vramplan-e2e-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}/"
    finally:
        srv.shutdown()
        thread.join(timeout=10)
        srv.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=TIMEOUT_MS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server):  # type: ignore[no-untyped-def]
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    outside: list[str] = []
    pg.on("request", lambda req: None if req.url.startswith((server, "blob:", "data:")) else outside.append(req.url))
    pg.goto(server)
    pg.wait_for_selector("body[data-ready='1']")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not outside, f"the page fetched something not served by vramplan: {outside}"


def choose_mgm_2b_on_4x4090(pg) -> None:  # type: ignore[no-untyped-def]
    pg.select_option("#model", "mgm-2b")
    pg.select_option("#gpu", "rtx4090")
    pg.fill("#gpus_per_node", "4")
    pg.fill("#micro_batch", "8")  # MGM's stage-2 script: --per_device_train_batch_size 8
    pg.fill("#grad_accum", "2")


def test_mgm_2b_on_4x4090_oom_then_plan_then_ds_config(page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    choose_mgm_2b_on_4x4090(page)
    page.click("#btn-estimate")
    out = page.locator("#estimate-out")
    expect(out.locator(".setup")).to_contain_text("micro-batch 8 x accum 2 x 4 DP")
    expect(out).to_have_attribute("data-verdict", "OOM")
    expect(out.locator(".verdict.oom")).to_contain_text("OOM")
    expect(out.locator(".verdict.oom")).to_contain_text("over by")
    assert out.locator("svg.vp-chart").count() == 4

    page.click("#btn-plan")
    plans = page.locator("#plan-out")
    expect(plans).to_have_attribute("data-fits", "true")
    expect(plans.locator(".verdict.fits")).to_contain_text("fit")
    first = plans.locator("table.plans tbody tr").first
    expect(first).to_contain_text("micro-batch")
    peak = float(first.locator("td.num").first.inner_text())
    assert 0 < peak <= 23.65, "the best plan fits a 24 GB RTX 4090"

    with page.expect_download() as info:
        plans.locator("button.dl[data-rank='1'][data-file='ds_config.json']").click()
    download = info.value
    assert download.suggested_filename == "ds_config.json"
    target = tmp_path / "ds_config.json"
    download.save_as(target)
    ds = json.loads(target.read_text(encoding="utf-8"))
    assert ds["zero_optimization"]["stage"] in (0, 1, 2, 3)
    assert ds["train_batch_size"] == 64  # MGM's global batch (8 x 2 x 4) is kept
    assert ds["train_batch_size"] == ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * 4
    page.screenshot(path=str(tmp_path / "vramplan-serve.png"), full_page=False)


def test_bad_input_shows_the_error_in_the_page(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.fill("#micro_batch", "0")
    page.click("#btn-estimate")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("micro_batch=0: must be between 1 and 4096")
    page.fill("#micro_batch", "1")
    page.click("#btn-estimate")
    expect(error).to_be_hidden()


def test_upload_config_json_and_doctor(page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from vramplan.registry._data import read_json

    config = tmp_path / "config.json"
    config.write_text(json.dumps(read_json("models", "llama-3.1-8b.json")), encoding="utf-8")
    page.select_option("#gpu", "a100-80g")
    page.fill("#gpus_per_node", "8")
    page.set_input_files("#config-file", str(config))
    expect(page.locator("#config-status")).to_contain_text("config.json")
    out = page.locator("#estimate-out")
    expect(out.locator(".sub")).to_contain_text("config on 8")

    page.select_option("#model", "mgm-2b")  # back to a preset for the doctor
    page.select_option("#gpu", "rtx4090")
    page.fill("#gpus_per_node", "4")
    script = (FIXTURES / "gemma/train/stage_1_2_full_gemma_v2b_336_hr_768.sh").read_text(encoding="utf-8")
    page.fill("#script", script)
    page.fill("#ds_json", (FIXTURES / "zero2.json").read_text(encoding="utf-8"))
    page.click("#btn-doctor")
    doctor = page.locator("#doctor-out")
    expect(doctor).to_have_attribute("data-verdict", "OOM")
    expect(doctor.locator(".verdict[data-verdict='FIX']")).to_contain_text("per GPU")
    expect(doctor.locator(".fix-files button")).to_have_text(["launch.sh", "ds_config.json"])
