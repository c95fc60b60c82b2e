"""Our exact counts against the real transformers classes, built on the meta device (no memory, no weights).

Each preset config is scaled down (2 decoder layers, 2 vision blocks) so the build is fast; the tiny
family configs are built as they are. Needs torch and transformers (``-m torch``).
"""

from __future__ import annotations

from typing import Any

import pytest
from tiny_configs import TINY

from vramplan.adapters import model_from_config, tower_from_config
from vramplan.registry import list_presets
from vramplan.registry._data import read_json
from vramplan.registry.presets import _index
from vramplan.registry.towers import find_tower_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.torch

MGM_BACKBONE = {"mgm": "llama", "mgm_gemma": "gemma", "mgm_mixtral": "mixtral"}


def _numel(model: Any) -> int:
    """Parameters as transformers holds them (DeepSeek-V3's ``e_score_correction_bias`` is a buffer in
    transformers 5, so it is not one)."""
    return sum(p.numel() for p in model.parameters())


def _hf_config(config: dict[str, Any]) -> Any:
    data = {k: v for k, v in config.items() if k not in ("auto_map", "architectures")}
    for token in ("pad_token_id", "bos_token_id", "eos_token_id"):  # family defaults may exceed a tiny vocab
        data.setdefault(token, None)
    return transformers.AutoConfig.for_model(data.pop("model_type"), **data)


def _causal_lm(config: dict[str, Any]) -> Any:
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(_hf_config(config))


def _scaled(config: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    first_dense = int(out.get("first_k_dense_replace") or 0)
    out["num_hidden_layers"] = max(2, first_dense + 1)
    if isinstance(out.get("layer_types"), list):  # per-layer attention kinds (GPT-OSS) must match the layer count
        out["layer_types"] = out["layer_types"][: out["num_hidden_layers"]]
    if isinstance(out.get("vision_config"), dict):
        out["vision_config"] = {**out["vision_config"], "depth": 2}
    return out


def _preset_config(preset_id: str) -> dict[str, Any]:
    return dict(read_json("models", _index()[preset_id]["file"]))


@pytest.mark.parametrize("key", sorted(TINY))
def test_tiny_family_matches_transformers(key: str) -> None:
    assert model_from_config(TINY[key]).num_params == _numel(_causal_lm(TINY[key]))


def _preset_ids(kind: str) -> list[str]:
    out = []
    for info in list_presets():
        model_type = str(_preset_config(info.id).get("model_type"))
        is_mgm = model_type in MGM_BACKBONE
        is_vlm = is_mgm or model_type in ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "gemma3")  # test_vlm_parity.py
        if (kind == "llm" and not is_vlm) or (kind == "mgm" and is_mgm):
            out.append(info.id)
    return out


@pytest.mark.parametrize("preset_id", _preset_ids("llm"))
def test_llm_preset_scaled_matches_transformers(preset_id: str) -> None:
    config = _scaled(_preset_config(preset_id))
    assert model_from_config(config).num_params == _numel(_causal_lm(config))


@pytest.mark.parametrize("preset_id", _preset_ids("mgm"))
def test_mgm_backbone_scaled_matches_transformers(preset_id: str) -> None:
    config = _scaled(_preset_config(preset_id))
    spec = model_from_config(config)
    backbone = {**config, "model_type": MGM_BACKBONE[config["model_type"]]}
    assert spec.decoder.num_params == _numel(_causal_lm(backbone))


def test_clip_tower_matches_clip_vision_model() -> None:
    config = find_tower_config("openai/clip-vit-large-patch14-336")
    assert config is not None
    with torch.device("meta"):
        model = transformers.CLIPVisionModel(_hf_config(config))
    assert tower_from_config(config).num_params == _numel(model) == 303_507_456


@pytest.mark.parametrize("use_head", [True, False])
def test_siglip_tower_matches_siglip_vision_model(use_head: bool) -> None:
    config = {**find_tower_config("google/siglip-so400m-patch14-384"), "vision_use_head": use_head}  # type: ignore[dict-item]
    with torch.device("meta"):
        model = transformers.SiglipVisionModel(_hf_config(config))
    assert tower_from_config(config).num_params == _numel(model)


def test_convnext_trunk_matches_convnext_model_without_final_norm() -> None:
    """transformers' ConvNextModel has the same stem and stages as the timm/OpenCLIP trunk MGM keeps; it
    adds a final LayerNorm over the last stage (the pooled head norm), which MGM drops."""
    config = find_tower_config("openclip-convnext-large-d-320-laion2B-s29B-b131K-ft-soup")
    assert config is not None
    with torch.device("meta"):
        model = transformers.ConvNextModel(_hf_config(config))
    head_norm = sum(p.numel() for p in model.layernorm.parameters())
    assert tower_from_config(config).num_params == _numel(model) - head_norm == 196_227_264


def test_mgm_connectors_match_torch_modules() -> None:
    nn = torch.nn
    spec = model_from_config(_preset_config("mgm-2b"))
    projector, mining = spec.connectors
    mlp = nn.Sequential(nn.Linear(1024, 2048), nn.GELU(), nn.Linear(2048, 2048))
    heads = [nn.Sequential(nn.LayerNorm(1024), nn.Linear(1024, 1024)),
             nn.Sequential(nn.LayerNorm(2880), nn.Linear(2880, 1024)),
             nn.Sequential(nn.LayerNorm(2880), nn.Linear(2880, 1024))]
    assert projector.num_params == _numel(mlp) == 6_295_552
    assert mining.num_params == sum(_numel(h) for h in heads) == 6_963_456


def _llava_hf_from_original(config: dict[str, Any]) -> dict[str, Any]:
    text = {k: v for k, v in config.items() if not k.startswith("mm_") and k not in ("architectures",)}
    text["model_type"] = "llama"
    vision = find_tower_config(config["mm_vision_tower"])
    return {"model_type": "llava", "text_config": text, "vision_config": vision,
            "vision_feature_select_strategy": "default", "vision_feature_layer": -2}


@pytest.mark.parametrize("preset_id", ["llava-1.5-7b", "llava-1.5-13b"])
def test_original_llava_equals_llava_for_conditional_generation(preset_id: str) -> None:
    """LlavaLlamaForCausalLM (original repo) and llava-hf's LlavaForConditionalGeneration hold the same
    modules: the whole CLIPVisionModel, a 2-layer GELU MLP with biases, and the Llama decoder."""
    original = _scaled(_preset_config(preset_id))
    hf = _llava_hf_from_original(original)
    with torch.device("meta"):
        model = transformers.LlavaForConditionalGeneration(_hf_config(hf))
    ours = model_from_config(original)
    assert ours.num_params == _numel(model)
    assert model_from_config(hf).num_params == ours.num_params


def test_llava_hf_partial_subconfigs_use_transformers_defaults() -> None:
    """llava-hf/llava-1.5-7b-hf saves text_config and vision_config as diffs against the defaults."""
    config = {
        "model_type": "llava", "image_token_index": 32000, "projector_hidden_act": "gelu",
        "text_config": {"model_type": "llama", "max_position_embeddings": 4096, "vocab_size": 32064,
                        "num_hidden_layers": 2},
        "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                          "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                          "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
    }
    with torch.device("meta"):
        model = transformers.LlavaForConditionalGeneration(_hf_config(config))
    spec = model_from_config(config)
    assert spec.num_params == _numel(model)
    assert spec.image_tokens == 576


def test_qwen2_vl_scaled_matches_transformers() -> None:
    config = _scaled(_preset_config("qwen2-vl-7b"))
    with torch.device("meta"):
        model = transformers.Qwen2VLForConditionalGeneration(_hf_config(config))
    spec = model_from_config(config)
    assert spec.num_params == _numel(model)
    merger = spec.connectors[0]
    assert merger.num_params == _numel(model.model.visual.merger)
    assert spec.towers[0].num_params == _numel(model.model.visual) - merger.num_params
