"""Errors a user can cause with a config.json, and the no-torch import guarantee."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny_configs import TINY

from vramplan.adapters import model_from_config
from vramplan.core.errors import SpecError, VramplanError


def test_unknown_model_type_names_it_and_lists_supported() -> None:
    with pytest.raises(SpecError) as info:
        model_from_config({**TINY["llama"], "model_type": "made_up_lm"})
    text = str(info.value)
    assert "'made_up_lm'" in text and "llama" in text and "deepseek_v3" in text and "mgm" in text
    assert "\n" not in text


def test_unknown_model_type_suggests_the_nearest_family_and_preset() -> None:
    with pytest.raises(SpecError) as info:
        model_from_config({**TINY["llama"], "model_type": "gemma3n"})
    text = str(info.value)
    assert "nearest supported family: gemma3_text" in text and "\n" not in text
    with pytest.raises(SpecError, match=r"nearest supported family: qwen2\b.*preset: qwen2\.5-7b"):
        model_from_config({**TINY["llama"], "model_type": "qwen2_5"})


@pytest.mark.parametrize("model_type", ["qwen3_next", "jamba", "mamba", "zamba2"])
def test_hybrid_and_ssm_families_say_why_they_are_not_supported(model_type: str) -> None:
    with pytest.raises(SpecError, match="are not modelled") as info:
        model_from_config({**TINY["llama"], "model_type": model_type})
    assert "nearest supported family" not in str(info.value)


def test_missing_model_type() -> None:
    config = dict(TINY["llama"])
    del config["model_type"]
    with pytest.raises(SpecError, match="model_type"):
        model_from_config(config)


@pytest.mark.parametrize("key", ["hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads",
                                 "intermediate_size"])
def test_missing_required_key_is_named(key: str) -> None:
    config = dict(TINY["llama"])
    del config[key]
    with pytest.raises(SpecError, match=key):
        model_from_config(config)


def test_missing_moe_key_is_named() -> None:
    config = dict(TINY["mixtral"])
    del config["num_local_experts"]
    with pytest.raises(SpecError, match="num_local_experts"):
        model_from_config(config)


def test_missing_mla_key_is_named() -> None:
    config = dict(TINY["deepseek_v2"])
    del config["kv_lora_rank"]
    with pytest.raises(SpecError, match="kv_lora_rank"):
        model_from_config(config)


def test_missing_key_in_subconfig_names_path() -> None:
    config = {"model_type": "qwen2_vl", **{k: v for k, v in TINY["qwen2"].items() if k != "model_type"},
              "vision_config": {"depth": 2, "num_heads": 4, "hidden_size": 64}}
    with pytest.raises(SpecError, match=r"vision_config.*embed_dim"):
        model_from_config(config)


def test_bad_values() -> None:
    with pytest.raises(SpecError, match="hidden_size"):
        model_from_config({**TINY["llama"], "hidden_size": 0})
    with pytest.raises(SpecError, match="integer"):
        model_from_config({**TINY["llama"], "vocab_size": "many"})
    with pytest.raises(SpecError, match="JSON object"):
        model_from_config(["not", "a", "dict"])  # type: ignore[arg-type]


def test_tower_config_is_not_a_model() -> None:
    with pytest.raises(SpecError, match="tower_from_config"):
        model_from_config({"model_type": "clip_vision_model"})


def test_errors_are_vramplan_errors() -> None:
    assert issubclass(SpecError, VramplanError)


def test_adapters_and_registry_work_without_torch_transformers_or_hub() -> None:
    """Every preset parses with torch, transformers and huggingface_hub blocked (DeepSeek's auto_map is ignored)."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None
        sys.modules["transformers"] = None
        sys.modules["huggingface_hub"] = None
        import vramplan.core, vramplan.adapters, vramplan.registry
        from vramplan.registry import load_preset, list_presets
        for info in list_presets():
            load_preset(info.id)
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
