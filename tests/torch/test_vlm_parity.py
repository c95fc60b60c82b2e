"""Parameter counts of the VLM families equal transformers' meta build of ``AutoModelForImageTextToText``, for
the default config of each model_type and for the presets; Qwen2.5-VL window lengths equal transformers'."""

from __future__ import annotations

import json
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from vramplan.adapters import model_from_config
from vramplan.registry._data import read_json
from vramplan.registry.presets import _index

pytestmark = pytest.mark.torch


def _meta_count(model_type: str, data: dict[str, Any]) -> int:
    from transformers import AutoConfig, AutoModelForImageTextToText

    clean = {k: v for k, v in data.items() if k not in ("model_type", "architectures") and not k.startswith("vramplan_")}
    cfg = AutoConfig.for_model(model_type, **json.loads(json.dumps(clean)))
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen2_5_vl", "gemma3", "llava_next"])
def test_default_config_parity(model_type: str) -> None:
    from transformers import AutoConfig

    data = AutoConfig.for_model(model_type).to_dict()
    data["model_type"] = model_type
    assert model_from_config(data).num_params == _meta_count(model_type, data)


@pytest.mark.parametrize("preset", ["qwen2-vl-2b", "qwen2-vl-7b", "qwen2.5-vl-3b", "qwen2.5-vl-7b",
                                    "gemma-3-4b", "gemma-3-12b", "gemma-3-27b", "llava-v1.6-mistral-7b",
                                    "llava-v1.6-vicuna-7b", "llava-v1.6-vicuna-13b"])
def test_preset_parity(preset: str) -> None:
    data = dict(read_json("models", _index()[preset]["file"]))
    assert model_from_config(data).num_params == _meta_count(str(data["model_type"]), data)


@pytest.mark.parametrize(("grid_h", "grid_w"), [(64, 80), (12, 16), (34, 46), (4, 4)])
def test_window_lengths_equal_transformers(grid_h: int, grid_w: int) -> None:
    from transformers.vision_utils import get_vision_window_index

    from vramplan.tracing.vlm import qwen_vl_window_lengths

    _, cu = get_vision_window_index(torch.tensor([[1, grid_h, grid_w]]), spatial_merge_size=2, window_size=112,
                                    patch_size=14)
    assert (cu[1:] - cu[:-1]).tolist() == qwen_vl_window_lengths(grid_h, grid_w, 2, 112, 14)


@pytest.mark.parametrize("size", [(672, 672), (336, 672), (480, 640), (1080, 1920), (300, 1000), (1000, 1000)])
def test_llava_next_tokens_equal_pack_image_features(size: tuple[int, int]) -> None:
    """Tower passes and LLM tokens of one (height, width) image equal transformers' ``image_size_to_num_patches``
    and the length ``LlavaNextModel.pack_image_features`` returns (meta tensors: shapes only)."""
    from types import SimpleNamespace

    from transformers import AutoConfig
    from transformers.models.llava_next.modeling_llava_next import (
        LlavaNextModel,
        image_size_to_num_patches,
    )

    from vramplan.adapters.hf_vision import llava_next_tokens

    cfg = AutoConfig.for_model("llava_next")
    pinpoints = cfg.image_grid_pinpoints
    passes = image_size_to_num_patches(list(size), pinpoints, 336)
    feats = torch.empty(passes, 576, 8, device="meta")
    packed, _ = LlavaNextModel.pack_image_features(SimpleNamespace(config=cfg), [feats], [list(size)], "default",
                                                      torch.empty(8, device="meta"))
    assert llava_next_tokens(size, [tuple(p) for p in pinpoints], 336, 14, 576) == (passes, packed[0].shape[0])
