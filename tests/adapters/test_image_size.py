"""``train.image_size`` (``--image-size``): the image size sets a dynamic-resolution tower's patches and tokens.

Numbers follow the Qwen2-VL image processor's ``smart_resize`` (sides rounded to multiples of 28 px; an explicit
size is kept up to the processor's default 12845056 px); fixed-resolution towers refuse the field.
"""

from __future__ import annotations

import pytest

from vramplan.adapters.scenario_file import scenario_from_dict, scenario_to_dict
from vramplan.api import estimate_from_dict
from vramplan.cli.main import main
from vramplan.core.errors import ScenarioError


def _scenario(**train: object) -> dict:
    return {"model": "qwen2.5-vl-7b", "hardware": {"gpu": "a100-80g", "gpus_per_node": 2},
            "train": {"method": "lora", "seq_len": 8192, **train}}


def test_full_hd_image_is_resized_to_multiples_of_28() -> None:
    scn = scenario_from_dict(_scenario(image_size="1920x1080"))
    tower = scn.model.towers[0]
    # 1920 -> 1932, 1080 -> 1092 (round to 28); 138 x 78 patches of 14 px; 2 x 2 merge -> 2691 tokens
    assert (tower.image_size, tower.num_patches) == (1932, 138 * 78)
    assert scn.model.image_tokens == 138 * 78 // 4
    assert scn.train.image_size == (1920, 1080)


def test_default_is_the_model_card_cap_and_forms_agree() -> None:
    default = scenario_from_dict(_scenario()).model.towers[0]
    assert (default.image_size, default.num_patches) == (1120, 80 * 64)  # 1280 tokens, max_pixels of the card
    for form in ([1120, 896], "1120x896", "1120, 896"):
        assert scenario_from_dict(_scenario(image_size=form)).model.towers[0].num_patches == 80 * 64
    assert scenario_from_dict(_scenario(image_size=448)).model.towers[0].num_patches == 32 * 32


@pytest.mark.parametrize(("small", "large"), [(448, 896), ("896x896", "1920x1080"), ("1920x1080", "3840x2160")])
def test_a_larger_image_never_lowers_memory(small: object, large: object) -> None:
    a = estimate_from_dict(_scenario(image_size=small))
    b = estimate_from_dict(_scenario(image_size=large))
    assert b.peak.breakdown["activations/vision"] > a.peak.breakdown["activations/vision"]
    assert b.device_used_bytes >= a.device_used_bytes


def test_round_trip_keeps_the_image_size() -> None:
    scn = scenario_from_dict(_scenario(image_size=[1280, 720]))
    data = scenario_to_dict(scn, model_ref="qwen2.5-vl-7b")
    assert data["train"]["image_size"] == [1280, 720]
    again = scenario_from_dict(data)
    assert again.model.towers[0].num_patches == scn.model.towers[0].num_patches


def test_fixed_resolution_towers_refuse_it() -> None:
    with pytest.raises(ScenarioError, match=r"train.image_size=\[672, 672\]: does not apply: model_type='mgm_gemma'"):
        scenario_from_dict({"model": "mgm-2b", "train": {"image_size": 672}})


@pytest.mark.parametrize("bad", ["0x5", "12x", "axb", "1x2x3"])
def test_cli_bad_image_size_is_one_line_exit_2(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["estimate", "qwen2.5-vl-7b", "--image-size", bad])
    err = capsys.readouterr().err
    assert code == 2 and "train.image_size" in err and len(err.strip().splitlines()) == 1
