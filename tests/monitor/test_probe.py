"""``vramplan probe``: the search, the prediction, the launch line, the CPU path, and no-GPU behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vramplan.cli.main import main
from vramplan.monitor.probe import (
    SearchResult,
    TrialResult,
    launch_command,
    predicted_largest,
    probe_report,
    render_probe,
    search_largest,
)

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 256}


def limit_trial(limit: int, calls: list[int]):
    def trial(mb: int) -> TrialResult:
        calls.append(mb)
        return TrialResult(micro_batch=mb, fits=mb <= limit, peak_reserved_bytes=mb * 2**30)
    return trial


@pytest.mark.parametrize("limit", [1, 2, 3, 37, 64, 100, 1000])
def test_search_finds_the_exact_limit(limit: int) -> None:
    calls: list[int] = []
    result = search_largest(limit_trial(limit, calls), limit=4096)
    assert result.largest == limit and not result.capped
    assert len(calls) <= 2 * (limit.bit_length() + 1)  # exponential + binary, not linear


def test_search_edge_cases() -> None:
    calls: list[int] = []
    none = search_largest(limit_trial(0, calls))
    assert none.largest == 0 and calls == [1]
    capped = search_largest(limit_trial(10_000, []), limit=48)
    assert capped.largest == 48 and capped.capped
    assert capped.trial(48).fits and capped.trial(3) is None
    with pytest.raises(ValueError):
        search_largest(limit_trial(1, []), start=0)


def test_predicted_largest_matches_the_estimate() -> None:
    from vramplan.api import estimate_from_dict

    scn = {"model": "llama-3.1-8b", "hardware": {"gpu": "a100-80g"}, "parallel": {"engine": "single"},
           "train": {"method": "lora", "seq_len": 2048}}
    best = predicted_largest(scn, limit=256)
    assert best >= 1
    fits = lambda mb: estimate_from_dict({**scn, "train": {**scn["train"], "micro_batch": mb}}).fits_gpu  # noqa: E731
    assert fits(best) and (best == 256 or not fits(best + 1))


def test_launch_commands() -> None:
    assert launch_command("fsdp2", 4, 1, ["s.yaml"]) == "torchrun --nproc-per-node 4 -m vramplan probe s.yaml"
    assert launch_command("deepspeed", 8, 1, ["s.yaml", "--steps", "3"]) == \
        "deepspeed --num_gpus 8 --module vramplan probe s.yaml --steps 3"
    assert "--nnodes 2 --node-rank $NODE_RANK" in launch_command("ddp", 8, 2, ["my file.yaml"])
    assert "'my file.yaml'" in launch_command("ddp", 8, 2, ["my file.yaml"])


def test_probe_report_and_text() -> None:
    scn = {"model": "llama-3.1-8b", "hardware": {"gpu": "a100-80g"}, "parallel": {"engine": "single"},
           "train": {"method": "lora", "seq_len": 1024, "micro_batch": 2}}
    search = search_largest(limit_trial(5, []), limit=64)
    rep = probe_report(scn, search, {"gpu_name": "Fake GPU", "capacity_bytes": 80 * 2**30, "world_size": 1}, limit=64)
    assert rep["largest_micro_batch"] == 5
    assert rep["at_largest"]["micro_batch"] == 5
    assert rep["at_largest"]["predicted"]["peak_reserved_bytes"] > 0
    assert rep["at_scenario_micro_batch"]["micro_batch"] == 2
    json.dumps(rep)
    text = render_probe(rep)
    assert "Largest micro-batch that fits: 5" in text and "trials: 1, 2, 4, 8 OOM, 6 OOM, 5" in text


def test_probe_cli_without_gpu_says_so_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["probe", "mgm-2b-stage2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA GPU" in out[0]


def test_probe_cli_bad_input_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "no-such-model-xyz"]) == 2
    assert main(["probe", "mgm-2b-stage2", "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("vramplan: error:") for e in err)


@pytest.mark.torch
def test_probe_session_runs_real_steps_on_the_cpu(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from vramplan.adapters.scenario_file import scenario_from_dict
    from vramplan.monitor.probe_torch import ProbeSession

    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    scn = scenario_from_dict({"model": str(path), "hardware": {"gpu": "a100-80g"}, "parallel": {"engine": "single"},
                              "train": {"seq_len": 32, "attention": "sdpa", "grad_ckpt": "full"}})
    session = ProbeSession(TINY, scn, steps=2, device="cpu")
    result = search_largest(session.trial, limit=4)
    assert isinstance(result, SearchResult) and result.largest == 4 and result.capped
    assert all(t.fits and t.step_time_s is not None for t in result.trials)


@pytest.mark.torch
def test_workload_lora_vlm_and_fsdp2_fake_group_on_the_cpu(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import torch.distributed as dist

    from vramplan.adapters.scenario_file import scenario_from_dict
    from vramplan.monitor.workload import build_workload

    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    base = {"model": str(path), "hardware": {"gpu": "a100-80g"}, "train": {"seq_len": 16, "attention": "sdpa"}}
    try:
        import peft  # noqa: F401
    except ImportError:
        peft = None
    if peft is not None:
        w = build_workload(TINY, scenario_from_dict({**base, "train": {**base["train"], "method": "lora"}}), "cpu")
        w.step(2)
        trainable = sum(p.numel() for p in w.model.parameters() if p.requires_grad)
        assert 0 < trainable < sum(p.numel() for p in w.model.parameters()) // 4  # adapters only
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", rank=0, world_size=4, store=FakeStore())
    try:
        scn = scenario_from_dict({**base, "hardware": {"gpu": "a100-80g", "gpus_per_node": 4},
                                  "parallel": {"engine": "fsdp2"}})
        w = build_workload(TINY, scn, "cpu")
        w.step(2)
        assert type(next(w.model.parameters())).__name__ == "DTensor"
    finally:
        dist.destroy_process_group()


@pytest.mark.torch
def test_vlm_batch_never_puts_the_image_token_in_the_text(tmp_path: Path) -> None:
    """A random text token equal to the image token id breaks LLaVA ("Image features and image tokens do not match")."""
    pytest.importorskip("transformers")
    import torch

    from vramplan.adapters.scenario_file import scenario_from_dict
    from vramplan.monitor.workload import Workload

    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    scn = scenario_from_dict({"model": str(path), "hardware": {"gpu": "a100-80g"},
                              "train": {"seq_len": 64, "images_per_sample": 1}})
    w = Workload(model=None, optimizer=None, config=None, scenario=scn, device=torch.device("cpu"), vocab_size=4,
                 image={"tokens": 5, "token_id": 1, "size": 8, "dtype": torch.float32})
    for _ in range(5):
        batch = w.batch(8)
        ids = batch["input_ids"]
        assert (ids[:, :5] == 1).all() and not (ids[:, 5:] == 1).any()
        assert (batch["labels"][:, :5] == -100).all() and batch["pixel_values"].shape == (8, 3, 8, 8)


@pytest.mark.torch
def test_shrink_config_keeps_the_architecture_and_valid_token_ids() -> None:
    transformers = pytest.importorskip("transformers")
    import torch

    from vramplan.monitor.workload import hf_config, shrink_config
    from vramplan.registry import load_config

    root = Path(__file__).resolve().parents[2] / "benchmarks" / "calibration_configs"
    for ref in [*sorted(str(p) for p in root.glob("*.json")), "llama-3.1-8b"]:
        original = load_config(ref)
        small = shrink_config(original)
        assert small["model_type"] == original["model_type"]
        cfg = hf_config(small)
        text = cfg.get_text_config()
        assert text.num_hidden_layers == 2 and text.hidden_size == 64 and text.vocab_size == 512
        for key in ("bos_token_id", "eos_token_id", "pad_token_id", "image_token_id"):
            value = getattr(cfg, key, None)
            assert value is None or not isinstance(value, int) or value < 512, (ref, key, value)
        auto = (transformers.AutoModelForImageTextToText if hasattr(cfg, "vision_config")
                else transformers.AutoModelForCausalLM)
        with torch.device("meta"):
            model = auto.from_config(cfg)
        assert sum(p.numel() for p in model.parameters()) < 2_000_000, ref
        if hasattr(cfg, "vision_config"):
            assert cfg.vision_config.image_size == 56 and cfg.vision_config.num_hidden_layers == 2
