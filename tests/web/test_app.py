"""Every endpoint of ``vramplan serve`` through Flask's test client, with its limits and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramplan import api

pytest.importorskip("flask", reason='the web page needs the "web" extra (pip install "vramplan[web]")')

from vramplan.registry import load_preset
from vramplan.web import create_app
from vramplan.web.forms import MAX_CONTENT_BYTES, MAX_SCRIPT_CHARS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mgm" / "scripts"
MGM_2B_SCRIPT = (FIXTURES / "gemma/train/stage_1_2_full_gemma_v2b_336_hr_768.sh").read_text(encoding="utf-8")
ZERO2 = (FIXTURES / "zero2.json").read_text(encoding="utf-8")
MGM_2B_ON_4090 = {"model": "mgm-2b", "gpu": "rtx4090", "gpus_per_node": 4, "micro_batch": 8, "grad_accum": 2}


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    return create_app().test_client()


def error_of(resp) -> str:  # type: ignore[no-untyped-def]
    assert resp.is_json, resp.data[:200]
    return str(resp.get_json()["error"])


def test_page_and_static_files_are_local(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/")
    assert page.status_code == 200 and b"<title>vramplan" in page.data
    text = page.data.decode()
    assert "http://" not in text and "https://" not in text
    for asset in ("/static/app.js", "/static/style.css"):
        resp = client.get(asset)
        assert resp.status_code == 200, asset
        assert b"http://" not in resp.data and b"https://" not in resp.data, asset
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/favicon.ico").status_code == 204


def test_options(client) -> None:  # type: ignore[no-untyped-def]
    data = client.get("/api/options").get_json()
    assert "mgm-2b" in {p["id"] for p in data["presets"]}
    assert "rtx4090" in {g["id"] for g in data["gpus"]}
    assert data["scenarios"]["mgm-2b-stage2"]["gpus_per_node"] == 4
    assert "qlora" in data["choices"]["method"]
    assert data["limits"]["max_request_bytes"] == MAX_CONTENT_BYTES


def test_estimate_mgm_2b_on_4090_is_oom(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/estimate", json=MGM_2B_ON_4090)
    assert resp.status_code == 200, resp.data
    data = resp.get_json()
    assert data["verdict"] == "OOM" and data["fits"] is False
    assert data["estimate"]["gpu"]["count"] == 4 and data["estimate"]["gpu"]["id"] == "rtx4090"
    assert isinstance(data["estimate"]["device_used_bytes"], int)
    assert 'data-verdict="OOM"' in data["html"] and data["html"].count("<svg") == 4


def test_estimate_from_a_builtin_scenario_matches_the_cli(client) -> None:  # type: ignore[no-untyped-def]
    from vramplan import estimate_from_dict
    from vramplan.registry.scenario_presets import builtin_scenario

    base = builtin_scenario("mgm-2b-stage2")
    base.pop("name"), base.pop("description")
    data = client.post("/api/estimate", json={"base": "mgm-2b-stage2"}).get_json()
    assert data["estimate"]["device_used_bytes"] == estimate_from_dict(base).device_used_bytes


def test_uploaded_config_json(client) -> None:  # type: ignore[no-untyped-def]
    from vramplan.registry._data import read_json

    config = read_json("models", "llama-3.1-8b.json")
    resp = client.post("/api/estimate", json={"config_json": json.dumps(config), "config_name": "../../my-llama.json",
                                              "gpu": "a100-80g", "gpus_per_node": 8, "zero": 3})
    assert resp.status_code == 200, resp.data
    data = resp.get_json()
    assert data["estimate"]["model"]["total_params"] == load_preset("llama-3.1-8b").num_params
    assert data["estimate"]["scenario"]["model"] == "my-llama.json"  # a label, never a path


def test_plan_finds_fitting_plans_with_files(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/plan", json=MGM_2B_ON_4090)
    assert resp.status_code == 200, resp.data
    data = resp.get_json()
    assert data["fits"] is True and data["start_verdict"] == "OOM"
    assert 1 <= len(data["plans"]) <= 5
    assert all(p["device_used_bytes"] <= 23.65 * 1024**3 for p in data["plans"])
    assert "ds_config.json" in data["plans"][0]["files"]
    assert 'table class="plans"' in data["html"]


def test_plan_when_nothing_fits(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/plan", json={"base": "mgm-8x7b-stage2", "plan_method": "full"})
    data = resp.get_json()
    assert resp.status_code == 200 and data["fits"] is False and data["plans"] == []
    assert "No plan fits" in data["html"]


def test_emit_plan_files(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/emit", json={**MGM_2B_ON_4090, "plan_rank": 1})
    assert resp.status_code == 200, resp.data
    files = resp.get_json()["files"]
    ds = json.loads(files["ds_config.json"])
    assert ds["train_batch_size"] == ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * 4
    assert "deepspeed" in files["launch.sh"] and "NCCL_P2P_DISABLE=1" in files["launch.sh"]
    assert "scenario.yaml" in files


def test_emit_fsdp_setup_gives_an_accelerate_config(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/emit", json={"model": "llama-3.1-8b", "gpu": "a100-80g", "gpus_per_node": 8,
                                          "engine": "fsdp"})
    assert resp.status_code == 200, resp.data
    assert "accelerate_config.yaml" in resp.get_json()["files"]


def test_emit_rank_beyond_the_plans(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/emit", json={**MGM_2B_ON_4090, "plan_rank": 999})
    assert resp.status_code == 400 and "plan_rank=999" in error_of(resp)


def test_doctor_on_the_mgm_script(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/doctor", json={"model": "mgm-2b", "gpu": "rtx4090", "gpus_per_node": 4,
                                            "script": MGM_2B_SCRIPT, "ds_json": ZERO2})
    assert resp.status_code == 200, resp.data
    data = resp.get_json()
    assert data["verdict"] == "OOM" and data["fix"] is not None
    assert data["fix"]["device_used_bytes"] < 23.65 * 1024**3
    assert "HW001" in data["findings"]  # RTX 40xx without NCCL_P2P_DISABLE
    assert 'data-verdict="FIX"' in data["html"]
    files = data["fix_files"]
    assert sorted(files) == ["ds_config.json", "launch.sh"]
    assert "--deepspeed ds_config.json" in files["launch.sh"]  # next to the script, not a server path
    assert f"{data['fix']['device_used_bytes'] / 1024**3:.2f} GiB" in files["launch.sh"]  # the header's prediction
    assert json.loads(files["ds_config.json"])["zero_optimization"]["stage"] in (2, 3)


def test_doctor_with_an_uploaded_config_json(client) -> None:  # type: ignore[no-untyped-def]
    from vramplan.registry._data import read_json

    config = json.dumps(read_json("models", "llama-3.1-8b.json"))
    script = ("torchrun --nproc_per_node 2 train.py --model_name_or_path ./my-llama --bf16 True "
              "--per_device_train_batch_size 16 --model_max_length 4096 --gradient_checkpointing False")
    resp = client.post("/api/doctor", json={"config_json": config, "config_name": "my-llama", "gpu": "rtx4090",
                                            "gpus_per_node": 2, "script": script})
    assert resp.status_code == 200, resp.data
    data = resp.get_json()
    assert data["verdict"] == "OOM"  # full fine-tuning of 8B on two 24 GB cards
    assert "my-llama" in data["html"]
    cli = api.estimate_from_dict({"model": "llama-3.1-8b", "hardware": {"gpu": "rtx4090", "gpus_per_node": 2},
                                  "parallel": {"engine": "ddp"},
                                  "train": {"precision": "bf16-mixed", "micro_batch": 16, "seq_len": 4096,
                                            "grad_ckpt": "none", "attention": "sdpa", "optimizer": "adamw"}})
    assert cli.fits is False


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "mgm-2b", "script": MGM_2B_SCRIPT}, "paste that JSON"),
        ({"model": "mgm-2b", "script": "deepspeed --hostfile /etc/passwd train.py --per_device_train_batch_size 1"},
         "hostfile"),
        ({"model": "mgm-2b", "script": "deepspeed -H /etc/hosts train.py"}, "hostfile"),
        ({"model": "mgm-2b", "script": "   "}, "paste the launch command"),
        ({"model": "mgm-2b", "script": "echo hello"}, "no launcher line"),
        ({"script": MGM_2B_SCRIPT, "ds_json": ZERO2, "config_json": "{}"}, "model_type"),
        ({"script": MGM_2B_SCRIPT, "ds_json": ZERO2}, "upload its config.json"),
        ({"model": "mgm-2b", "script": MGM_2B_SCRIPT, "ds_json": "{not json"}, "not valid JSON"),
        ({"model": "mgm-2b", "script": MGM_2B_SCRIPT, "ds_json": "[1, 2]"}, "JSON object"),
        ({"model": "mgm-2b", "script": "x" * (MAX_SCRIPT_CHARS + 1)}, "over the limit"),
    ],
)
def test_doctor_bad_input(client, body, needle) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/doctor", json=body)
    assert resp.status_code == 400, resp.data
    assert needle in error_of(resp)
    assert "root:" not in error_of(resp)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "../../etc/passwd"}, "model='../../etc/passwd': unknown"),
        ({"model": "/etc/passwd.json"}, "unknown"),
        ({"model": "mgm-2b", "gpu": "/dev/zero"}, "gpu='/dev/zero': unknown"),
        ({"base": "../scenarios/x"}, "base="),
        ({"model": "mgm-2b", "micro_batch": 0}, "micro_batch=0: must be between 1 and 4096"),
        ({"model": "mgm-2b", "micro_batch": 10**9}, "must be between"),
        ({"model": "mgm-2b", "micro_batch": 2.5}, "whole number"),
        ({"model": "mgm-2b", "micro_batch": True}, "whole number"),
        ({"model": "mgm-2b", "seq_len": "__import__('os')"}, "not a number"),
        ({"model": "mgm-2b", "gpus_per_node": "1" * 30}, "too long"),
        ({"model": "mgm-2b", "precision": "fp8"}, "train.precision='fp8': unknown value"),
        ({"model": "mgm-2b", "method": "x" * 100}, "over the limit"),
        ({"model": "mgm-2b", "method": ["full"]}, "must be text"),
        ({"model": "mgm-2b", "exec": "rm -rf /"}, "unknown field 'exec'"),
        ({"config_json": "{broken"}, "not valid JSON"),
        ({"config_json": "[]"}, "JSON object"),
        ({"config_json": json.dumps({"model_type": "no-such-arch"})}, "no-such-arch"),
        ({}, "model: pick a preset"),
    ],
)
def test_estimate_bad_input(client, body, needle) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/estimate", json=body)
    assert resp.status_code == 400, resp.data
    assert needle in error_of(resp)


def test_body_must_be_a_json_object(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/estimate", data="model=mgm-2b", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 415 and "JSON" in error_of(resp)
    resp = client.post("/api/estimate", data="{oops", content_type="application/json")
    assert resp.status_code == 400 and "not valid JSON" in error_of(resp)
    resp = client.post("/api/estimate", json=["mgm-2b"])
    assert resp.status_code == 400 and "JSON object" in error_of(resp)


def test_request_size_cap(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/estimate", json={"config_json": "x" * (MAX_CONTENT_BYTES + 10)})
    assert resp.status_code == 413 and "larger than 2 MiB" in error_of(resp)


def test_nested_json_bomb_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/api/estimate", json={"config_json": "[" * 100_000 + "]" * 100_000})
    assert resp.status_code == 400 and "config_json" in error_of(resp)


def test_deeply_nested_body_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    body = '{"model": ' + "[" * 50_000 + "]" * 50_000 + "}"
    resp = client.post("/api/estimate", data=body, content_type="application/json")
    assert resp.status_code == 400 and "nested too deeply" in error_of(resp)


def test_only_loopback_host_names(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/options", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert client.get("/api/options", headers={"Host": "evil.example"}).status_code == 400


def test_get_on_post_endpoints_and_unknown_paths(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/estimate").status_code == 405
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/nope").status_code == 404


def test_internal_errors_do_not_leak(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from vramplan.web import service

    def boom(form):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret detail /home/user")

    monkeypatch.setattr(service, "estimate_view", boom)
    client = create_app().test_client()
    resp = client.post("/api/estimate", json={"model": "mgm-2b"})
    assert resp.status_code == 500
    assert "secret" not in error_of(resp) and "RuntimeError" in error_of(resp)
