"""Added families: exact counts of released configs (pure), and parity with transformers' meta build of the
family's default config and of the released configs (torch)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from family_configs import DEFAULT_FAMILIES, REAL, VARIANTS

from vramplan.adapters import model_from_config


@pytest.mark.parametrize("name", sorted(REAL))
def test_released_config_exact_count(name: str) -> None:
    config, count, _published = REAL[name]
    assert model_from_config(config).num_params == count


@pytest.mark.parametrize("name", sorted(REAL))
def test_released_count_agrees_with_published_digits(name: str) -> None:
    """The published figure (e.g. ``8.17B``) is our count rounded to the digits it has."""
    _config, count, published = REAL[name]
    text = published.split(": ")[-1].split()[0]
    value = float(text.rstrip("B"))
    digits = len(text.rstrip("B").split(".")[1]) if "." in text else 0
    assert round(count / 1e9, digits) == pytest.approx(value), (name, count, published)
    assert math.isclose(count, value * 1e9, rel_tol=0.03)


def _meta_numel(model_type: str, data: dict[str, Any] | None) -> int:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if data is None:
        cfg = transformers.AutoConfig.for_model(model_type)
    else:
        clean = dict(data)
        for token in ("pad_token_id", "bos_token_id", "eos_token_id"):
            clean.setdefault(token, None)
        cfg = transformers.AutoConfig.for_model(model_type, **clean)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.torch
@pytest.mark.parametrize("model_type", DEFAULT_FAMILIES)
def test_default_config_matches_transformers(model_type: str) -> None:
    transformers = pytest.importorskip("transformers")
    data = transformers.AutoConfig.for_model(model_type).to_dict()
    data["model_type"] = model_type
    assert model_from_config(data).num_params == _meta_numel(model_type, None)


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(REAL))
def test_released_config_matches_transformers(name: str) -> None:
    config, count, _published = REAL[name]
    data = {k: v for k, v in config.items() if k != "model_type"}
    assert _meta_numel(config["model_type"], data) == count


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_option_variant_matches_transformers(name: str) -> None:
    config = VARIANTS[name]
    data = {k: v for k, v in config.items() if k != "model_type"}
    assert model_from_config(config).num_params == _meta_numel(config["model_type"], data)
