"""Presets: every shipped config against its published parameter count, name lookup and load_model."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import pytest

from vramplan.core.errors import SpecError, UnknownNameError, VramplanError
from vramplan.core.model import ModelSpec
from vramplan.registry import (
    HubError,
    PresetInfo,
    list_presets,
    load_model,
    load_preset,
    preset_info,
    presets,
)

PRESETS = {info.id: info for info in list_presets()}

STORED_TIED_HEAD = {"mgm-2b"}
"""Checkpoints that store ``lm_head.weight`` although it is tied to the embedding in memory (Gemma's default
``tie_word_embeddings`` applies; MGMGemmaForCausalLM.post_init ties it). Their published size is the
in-memory count plus one embedding table."""


def _published_scope(info: PresetInfo) -> str:
    """``llm`` when the index says the published figure is the backbone's only, else ``model``."""
    return "llm" if "backbone only" in info.notes.lower() else "model"


def _expected_of(info: PresetInfo, spec: ModelSpec) -> int:
    if _published_scope(info) == "llm":
        return spec.decoder.num_params
    if info.id in STORED_TIED_HEAD:
        return spec.num_params + spec.decoder.embedding_numel
    return spec.num_params


def test_there_are_presets() -> None:
    assert len(PRESETS) >= 20
    assert {"mgm-2b", "mgm-8x7b-hd", "llava-1.5-7b", "qwen2-vl-7b", "mixtral-8x7b"} <= set(PRESETS)


@pytest.mark.parametrize("preset_id", sorted(PRESETS))
def test_preset_count_matches_published(preset_id: str) -> None:
    info = PRESETS[preset_id]
    assert info.published_params is not None, f"{preset_id}: no published count in index.json"
    spec = load_preset(preset_id)
    ours = _expected_of(info, spec)
    assert abs(ours - info.published_params) <= info.published_params_precision, (
        f"{preset_id}: computed {ours:,} ({_published_scope(info)}) vs published {info.published_params:,} "
        f"+- {info.published_params_precision:,}")


ACTIVE = sorted(pid for pid, info in PRESETS.items() if info.published_active_params)


@pytest.mark.parametrize("preset_id", ACTIVE)
def test_moe_active_params_match_published(preset_id: str) -> None:
    """Published active counts have two significant digits and differ on whether the input embedding
    counts (DeepSeek leaves it out, Mistral keeps it); accept either, within one unit of the last digit."""
    info = PRESETS[preset_id]
    spec = load_preset(preset_id)
    active = spec.decoder.num_active_params if _published_scope(info) == "llm" else spec.num_active_params
    published = info.published_active_params
    assert published is not None and spec.is_moe
    unit = 10 ** (math.floor(math.log10(published)) - 1)
    assert active - spec.decoder.embedding_numel - unit <= published <= active + unit


def test_mgm_2b_is_tied_in_memory() -> None:
    spec = load_preset("mgm-2b")
    assert spec.decoder.tie_embeddings
    assert spec.num_params == 3_019_166_144


@pytest.mark.parametrize("alias", ["mgm-2b", "MGM-2B", "Mini-Gemini-2B", "YanweiLi/MGM-2B", " mgm_2b "])
def test_preset_aliases(alias: str) -> None:
    assert preset_info(alias).id == "mgm-2b"
    assert load_preset(alias).name == "mgm-2b"


def test_hf_id_and_display_name_aliases() -> None:
    assert preset_info("meta-llama/Llama-3.1-8B").id == "llama-3.1-8b"
    assert preset_info("Mixtral 8x7B v0.1").id == "mixtral-8x7b"


def test_unknown_preset_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_preset("mgm-7b-hdx")
    assert "mgm-7b-hd" in str(info.value) and "did you mean" in str(info.value)


def test_preset_info_fields() -> None:
    info = PRESETS["mixtral-8x7b"]
    assert info.hf_id == "mistralai/Mixtral-8x7B-v0.1" and info.published_active_params
    assert info.source.startswith("https://") and info.display_name


def test_load_preset_source_and_name() -> None:
    spec = load_preset("llava-1.5-7b")
    assert spec.name == "llava-1.5-7b" and spec.source == PRESETS["llava-1.5-7b"].source


def test_load_model_from_preset_file_and_folder(tmp_path: Path) -> None:
    config = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100,
              "num_attention_heads": 4, "intermediate_size": 96}
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    by_folder = load_model(str(folder))
    by_file = load_model(str(folder / "config.json"))
    assert by_folder.num_params == by_file.num_params and by_folder.name == "tiny-llama"
    assert load_model("Mini-Gemini-2B").name == "mgm-2b"


def test_load_model_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_model(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="JSON"):
        load_model(str(bad))
    with pytest.raises(UnknownNameError):
        load_model("no-such-model")


def test_load_model_hub_without_huggingface_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(HubError, match=r"pip install 'vramplan\[hf\]'"):
        load_model("someone/some-model")


def test_load_model_hub_download_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("huggingface_hub")
    monkeypatch.setattr(presets, "_hub_unreachable", lambda: None)

    def fail(repo_id: str, filename: str, local_files_only: bool) -> str:
        raise OSError("network unreachable")

    fake.hf_hub_download = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    with pytest.raises(HubError, match="network unreachable") as info:
        load_model("someone/some-model")
    assert isinstance(info.value, VramplanError)


def test_hub_unreachable_fails_fast_from_the_cache_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_dns(host: str, port: int) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls: list[bool] = []
    fake = types.ModuleType("huggingface_hub")

    def cache_only(repo_id: str, filename: str, local_files_only: bool) -> str:
        calls.append(local_files_only)
        raise OSError("not in the local cache")

    fake.hf_hub_download = cache_only  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    with pytest.raises(HubError, match=r"unreachable \(cannot resolve huggingface.co: Name or service not known\)"):
        load_model("someone/some-model")
    assert calls == [True]  # no network attempt (and none of huggingface_hub's retries)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert presets._hub_unreachable() == "HF_HUB_OFFLINE is set"


def test_load_model_hub_reads_only_config_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100,
              "num_attention_heads": 4, "intermediate_size": 96, "auto_map": {"AutoModel": "evil.Model"}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    asked: list[tuple[str, str]] = []
    fake = types.ModuleType("huggingface_hub")
    monkeypatch.setattr(presets, "_hub_unreachable", lambda: None)

    def download(repo_id: str, filename: str, local_files_only: bool) -> str:
        assert not local_files_only
        asked.append((repo_id, filename))
        return str(path)

    fake.hf_hub_download = download  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    spec = load_model("someone/tiny-qwen")
    assert asked == [("someone/tiny-qwen", "config.json")]
    assert spec.name == "someone/tiny-qwen" and spec.decoder.attention.qkv_bias
