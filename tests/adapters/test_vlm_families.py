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
