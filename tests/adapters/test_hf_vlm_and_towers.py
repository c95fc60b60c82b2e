"""Vision towers, connectors and VLM composition (LLaVA, Qwen2-VL, MGM) without torch."""

from __future__ import annotations

from typing import Any

import pytest

from vramplan.adapters import model_from_config, tower_from_config
from vramplan.adapters.hf_vision import convnext_numel, llava_projector, mgm_mining
from vramplan.core.errors import SpecError
from vramplan.core.model import Part
from vramplan.registry._data import read_json
from vramplan.registry.presets import _index


def _preset(preset_id: str) -> dict[str, Any]:
    return dict(read_json("models", _index()[preset_id]["file"]))


def test_convnext_large_trunk_count() -> None:
    """Stem 3->192 k4 (+bias) + LN; stages [192, 384, 768, 1536] x [3, 3, 27, 3]; ~196 M (docs/mgm.md 1.2)."""
    assert convnext_numel((192, 384, 768, 1536), (3, 3, 27, 3), 3, 4, True) == 196_227_264


def test_mgm_mining_count() -> None:
    assert mgm_mining(1024, 2880).num_params == 6_963_456


@pytest.mark.parametrize(("hidden", "expected"), [(2048, 6_295_552), (4096, 20_979_712), (5120, 31_467_520),
                                                  (7168, 58_734_592)])
def test_mlp2x_gelu_projector_counts(hidden: int, expected: int) -> None:
    """docs/mgm.md 1.3: 2B 6.30 M, 7B/8B/8x7B 20.98 M, 13B 31.47 M, 34B 58.73 M."""
    assert llava_projector("mlp2x_gelu", 1024, hidden).num_params == expected


def test_projector_types() -> None:
    assert llava_projector("linear", 1024, 4096).num_params == 1024 * 4096 + 4096
    assert len(llava_projector("mlp3x_gelu", 1024, 64).linears) == 3
    with pytest.raises(SpecError, match="mm_projector_type"):
        llava_projector("qformer", 1024, 64)


def test_mgm_normal_resolution_shapes() -> None:
    spec = model_from_config(_preset("mgm-7b"))
    clip, aux = spec.tower("vision"), spec.tower("vision_aux")
    assert clip is not None and aux is not None
    assert (clip.passes_per_image, clip.positions_per_pass, clip.patches_per_pass) == (1, 576, 577)
    assert (aux.kind, aux.image_size, aux.out_channels) == ("convnext", 768, 2880)
    assert aux.output_positions_per_image == 36864
    assert spec.image_tokens == 576
    assert [c.name for c in spec.connectors] == ["mm_projector", "vlm_uni"]
    assert spec.parts == (Part.LLM, Part.VISION, Part.VISION_AUX, Part.PROJECTOR)


def test_mgm_hd_shapes() -> None:
    spec = model_from_config(_preset("mgm-8x7b-hd"))
    clip, aux = spec.tower("vision"), spec.tower("vision_aux")
    assert clip is not None and aux is not None
    assert (clip.passes_per_image, clip.output_positions_per_image) == (5, 2880)
    assert (aux.image_size, aux.positions_per_pass, aux.output_positions_per_image) == (1536, 147456, 184_320)
    assert spec.image_tokens == 2880
    assert spec.moe_block_class == "MixtralSparseMoeBlock" and spec.is_moe


def test_mgm_flag_and_old_model_type() -> None:
    config = _preset("mgm-7b")
    flagged = {**config, "model_type": "llama", "mgm": True}
    renamed = {**config, "model_type": "mini_gemini"}
    assert model_from_config(flagged).num_params == model_from_config(config).num_params
    assert model_from_config(renamed).num_params == model_from_config(config).num_params


def test_mgm_aux_channels_must_match_tower() -> None:
    with pytest.raises(SpecError, match="mm_hidden_size_aux"):
        model_from_config({**_preset("mgm-7b"), "mm_hidden_size_aux": 1536})


def test_unknown_tower_reference() -> None:
    with pytest.raises(SpecError, match="mm_vision_tower"):
        model_from_config({**_preset("llava-1.5-7b"), "mm_vision_tower": "someone/eva-clip-g"})


def test_custom_tower_resolver() -> None:
    clip = dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, image_size=56, patch_size=14)
    spec = model_from_config({**_preset("llava-1.5-7b"), "mm_vision_tower": "my/tower"},
                             resolve_tower=lambda ref: clip if ref == "my/tower" else None)
    assert spec.towers[0].hidden_size == 64 and spec.image_tokens == 16


def test_llava_original_counts_and_tokens() -> None:
    spec = model_from_config(_preset("llava-1.5-7b"))
    assert spec.part_numel(Part.VISION) == 303_507_456
    assert spec.part_numel(Part.PROJECTOR) == 20_979_712
    assert spec.image_tokens == 576 and spec.decoder_layer_class == "LlamaDecoderLayer"


def test_llava_hf_projector_names_and_full_strategy() -> None:
    config = {"model_type": "llava", "vision_feature_select_strategy": "full",
              "text_config": {"model_type": "llama", "num_hidden_layers": 2},
              "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024, "image_size": 336,
                                "patch_size": 14, "intermediate_size": 4096, "num_hidden_layers": 24,
                                "num_attention_heads": 16}}
    spec = model_from_config(config)
    assert [lin.name for lin in spec.connectors[0].linears] == ["linear_1", "linear_2"]
    assert spec.image_tokens == 577


def test_qwen2_vl_tower_merger_and_tokens() -> None:
    spec = model_from_config(_preset("qwen2-vl-7b"))
    tower = spec.towers[0]
    merger = spec.connectors[0]
    assert (tower.num_patches, tower.patches_per_pass, spec.image_tokens) == (5120, 5120, 1280)
    assert tower.num_params == 631_183_360 and merger.kind == "merger" and merger.num_params == 44_575_744
    assert spec.decoder.attention.qkv_bias and spec.decoder_layer_class == "Qwen2VLDecoderLayer"


def test_qwen2_vl_vision_hidden_differing_from_llm_is_noted() -> None:
    """transformers builds such a model (AutoConfig.for_model('qwen2_vl') defaults: 3584 vs 8192), so it is
    counted as configured (meta-build parity) and flagged, not refused."""
    config = _preset("qwen2-vl-7b")
    config["vision_config"] = {**config["vision_config"], "hidden_size": 1536}
    spec = model_from_config(config)
    assert spec.connectors[0].linears[-1].d_out == 1536
    assert any("cannot merge" in n for n in spec.notes)


def test_tower_from_full_clip_config_and_errors() -> None:
    full = {"model_type": "clip", "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "patch_size": 14,
                                                     "image_size": 336, "num_hidden_layers": 24,
                                                     "num_attention_heads": 16}}
    assert tower_from_config(full).num_params == 303_507_456
    with pytest.raises(SpecError, match="vision tower"):
        tower_from_config({"model_type": "vit_mae"})
    with pytest.raises(SpecError, match="hidden_sizes"):
        tower_from_config({"model_type": "convnext", "hidden_sizes": [96, 192], "depths": [3]})
