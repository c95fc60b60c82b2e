"""Qwen2-VL / Qwen2.5-VL: exact counts (tower and merger split as transformers' ``visual`` / ``visual.merger``) (= transformers 5.24 meta builds, tests/torch/test_vlm_parity.py), the
processor's resize, and the image size driving patches and LLM tokens. No torch."""

from __future__ import annotations

from typing import Any

import pytest

from vramplan.adapters import model_from_config
from vramplan.adapters.hf_vision import qwen_vl_smart_resize
from vramplan.core.errors import SpecError
from vramplan.core.model import Part
from vramplan.registry._data import read_json
from vramplan.registry.presets import _index


def _preset(preset_id: str) -> dict[str, Any]:
    return dict(read_json("models", _index()[preset_id]["file"]))


@pytest.mark.parametrize(("preset", "total", "vision", "merger"), [
    ("qwen2-vl-2b", 2_208_985_600, 631_183_360, 34_087_936),
    ("qwen2-vl-7b", 8_291_375_616, 631_183_360, 44_575_744),
    ("qwen2.5-vl-3b", 3_754_622_976, 631_975_680, 36_708_608),
    ("qwen2.5-vl-7b", 8_292_166_656, 631_975_680, 44_574_464),
])
def test_qwen_vl_preset_counts_equal_the_meta_build(preset: str, total: int, vision: int, merger: int) -> None:
    spec = model_from_config(_preset(preset))
    assert spec.num_params == total
    assert spec.part_numel(Part.VISION) == vision
    assert spec.part_numel(Part.PROJECTOR) == merger


def test_qwen2_5_vl_tower_layout() -> None:
    spec = model_from_config(_preset("qwen2.5-vl-7b"))
    tower, merger = spec.towers[0], spec.connectors[0]
    assert (tower.block, tower.attention, tower.window_patches, tower.full_attention_layers) == (
        "qwen2_5_vl", "packed", 64, 4)
    assert (merger.norm, merger.group, merger.norm_numel) == ("rmsnorm", 4, 1280)
    assert spec.decoder_layer_class == "Qwen2_5_VLDecoderLayer"


@pytest.mark.parametrize(("size", "expected"), [
    ((1120, 896), (1120, 896)),        # exactly 1280 * 28 * 28
    ((1920, 1080), (1316, 728)),       # scaled down to <= 1003520 px, multiples of 28
    ((640, 480), (644, 476)),          # rounded to multiples of 28
    ((20, 20), (56, 56)),              # scaled up to min_pixels
])
def test_smart_resize(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert qwen_vl_smart_resize(*size) == expected


def test_image_size_drives_patches_and_tokens() -> None:
    config = {**_preset("qwen2.5-vl-7b"), "vramplan_image_size": [640, 480]}
    spec = model_from_config(config)
    assert spec.towers[0].num_patches == 46 * 34 and spec.image_tokens == 23 * 17
    square = model_from_config({**config, "vramplan_image_size": 448})
    assert square.image_tokens == 256
    with pytest.raises(SpecError, match="vramplan_image_size"):
        model_from_config({**config, "vramplan_image_size": [640]})


@pytest.mark.parametrize(("preset", "total", "vision", "projector"), [
    ("gemma-3-4b", 4_300_079_472, 416_866_032, 2_950_272),
    ("gemma-3-12b", 12_187_325_040, 416_866_032, 4_424_832),
    ("gemma-3-27b", 27_432_406_640, 416_866_032, 6_194_304),
])
def test_gemma3_preset_counts_equal_the_meta_build(preset: str, total: int, vision: int, projector: int) -> None:
    spec = model_from_config(_preset(preset))
    assert spec.num_params == total
    assert spec.part_numel(Part.VISION) == vision
    assert spec.part_numel(Part.PROJECTOR) == projector


def test_gemma3_layout() -> None:
    """SigLIP-So400m at 896 px / 14: 64 x 64 = 4096 patches average-pooled 4 x 4 to 256 tokens; no head, no CLS."""
    spec = model_from_config(_preset("gemma-3-4b"))
    tower, proj = spec.towers[0], spec.connectors[0]
    assert (tower.positions_per_pass, tower.patches_per_pass, tower.attention) == (4096, 4096, "native")
    assert (proj.kind, proj.group, proj.norm_numel) == ("gemma3_pool", 16, 1152)
    assert [(lin.d_in, lin.d_out, lin.bias) for lin in proj.linears] == [(1152, 2560, False)]
    assert spec.image_tokens == 256 and spec.decoder.tie_embeddings
    assert spec.decoder_layer_class == "Gemma3DecoderLayer"
    with pytest.raises(SpecError, match="mm_tokens_per_image"):
        model_from_config({**_preset("gemma-3-4b"), "mm_tokens_per_image": 200})


@pytest.mark.parametrize(("preset", "total", "projector"), [
    ("llava-v1.6-mistral-7b", 7_566_747_648, 20_983_808),
    ("llava-v1.6-vicuna-7b", 7_063_431_168, 20_983_808),
    ("llava-v1.6-vicuna-13b", 13_351_499_776, 31_472_640),
])
def test_llava_next_preset_counts_equal_the_meta_build(preset: str, total: int, projector: int) -> None:
    """CLIP ViT-L/336 (303,507,456 incl. the unused post_layernorm), linear_1/linear_2 + image_newline."""
    spec = model_from_config(_preset(preset))
    assert spec.num_params == total
    assert spec.part_numel(Part.VISION) == 303_507_456
    assert spec.part_numel(Part.PROJECTOR) == projector
    assert spec.connectors[0].extra_numel == spec.decoder.hidden_size


@pytest.mark.parametrize(("size", "passes", "tokens"), [
    (None, 5, 576 + 48 * 48 + 48),             # default: the largest pinpoint 672 x 672, nothing unpadded
    ((672, 336), 3, 576 + 24 * 48 + 24),       # w x h: one 336 x 672 (h x w) pinpoint, 2 tiles
    ((640, 480), 5, 576 + 36 * 48 + 36),       # 4:3 on the 672 x 672 grid: 48 rows cut to 36
    ((1920, 1080), 5, 576 + 28 * 48 + 28),     # 16:9: 48 rows cut to 27 -> padding 10 each side -> 28 rows
    ((1000, 300), 4, 576 + 22 * 72 + 22),      # wide: 336 x 1008 (h x w), 3 tiles, 24 rows cut to 22
])
def test_llava_next_image_size_drives_tiles_and_tokens(size: tuple[int, int] | None, passes: int, tokens: int) -> None:
    config = _preset("llava-v1.6-mistral-7b")
    if size is not None:
        config = {**config, "vramplan_image_size": list(size)}
    spec = model_from_config(config)
    assert (spec.towers[0].passes_per_image, spec.image_tokens) == (passes, tokens)
    assert spec.towers[0].output_positions_per_image == passes * 576


def test_llava_next_takes_train_image_size_and_gemma3_refuses_it() -> None:
    from vramplan.adapters.scenario_file import scenario_from_dict
    from vramplan.core.errors import ScenarioError

    def scenario(model: str, **train: object) -> dict[str, Any]:
        return {"model": model, "hardware": {"gpu": "a100-80g", "gpus_per_node": 1},
                "train": {"method": "lora", "seq_len": 4096, **train}}

    scn = scenario_from_dict(scenario("llava-v1.6-mistral-7b", image_size="640x480"))
    assert (scn.model.towers[0].passes_per_image, scn.model.image_tokens) == (5, 576 + 36 * 48 + 36)
    assert scenario_from_dict(scenario("llava-v1.6-mistral-7b")).model.image_tokens == 2928
    with pytest.raises(ScenarioError, match="image_size"):
        scenario_from_dict(scenario("gemma-3-4b", image_size="640x480"))
