"""LoRA targets across families: the default targets (Llama's names) stand for every linear of the decoder layer
in each family, as PEFT's ``all-linear`` does; explicit names match the family's own modules first, aliases only
when they name nothing of the model (scenario.lora_linear_names)."""

from __future__ import annotations

from typing import Any

import pytest

from vramplan.adapters import model_from_config
from vramplan.adapters.scenario_file import scenario_from_dict
from vramplan.core.errors import ScenarioError
from vramplan.core.memory.params import rank_params

_SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 4, "vocab_size": 100}


def _names(config: dict[str, Any], targets: list[str] | None = None) -> set[str]:
    lora: dict[str, Any] = {} if targets is None else {"targets": targets}
    scn = scenario_from_dict({"train": {"method": "lora", "lora": lora}, "hardware": {"gpu": "a100-80g"}},
                             model=model_from_config(config))
    return scn.lora_linear_names()


@pytest.mark.parametrize(("model_type", "extra", "expected"), [
    ("llama", {}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    ("starcoder2", {}, {"q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"}),
    ("gpt_neox", {}, {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}),
    ("phi", {}, {"q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"}),
    ("falcon", {}, {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}),
    ("nemotron", {}, {"q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"}),
    ("phi3", {}, {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),
    ("cohere", {}, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
])
def test_default_targets_cover_every_linear_of_the_family(model_type: str, extra: dict[str, Any],
                                                          expected: set[str]) -> None:
    config = {**_SMALL, "model_type": model_type, **extra}
    names = _names(config)
    assert names == expected
    spec = model_from_config(config)
    assert names == {lin.name for lin in spec.decoder.layer_linears(0)}
    assert names == _names(config, ["all-linear"])


def test_default_targets_give_starcoder2_mlp_adapters() -> None:
    """Before: only q/k/v/o matched StarCoder2 (c_fc/c_proj are not Llama names): 4 adapters, not 6."""
    spec = model_from_config({**_SMALL, "model_type": "starcoder2"})
    scn = scenario_from_dict({"train": {"method": "lora", "lora": {"r": 8}}, "hardware": {"gpu": "a100-80g"}},
                             model=spec)
    rp = rank_params(scn)
    h, i, r = 64, 128, 8
    per_layer = 4 * r * (h + h) + r * (h + i) + r * (i + h)  # q, k, v, o; c_fc; c_proj
    assert rp.trainable == 2 * per_layer


def test_moe_defaults_reach_attention_and_not_fused_expert_parameters() -> None:
    config = {**_SMALL, "model_type": "gpt_oss", "head_dim": 16, "num_local_experts": 4, "num_experts_per_tok": 2}
    assert _names(config) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert _names(config, ["all-linear"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate"}
    assert _names(config, ["experts.down_proj", "q_proj"]) == {"experts.down_proj", "q_proj"}
    # Qwen2-MoE names its routed experts gate/up/down_proj: the default still adapts them, as before
    qwen = {**_SMALL, "model_type": "qwen2_moe", "num_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64}
    assert {"gate_proj", "up_proj", "down_proj", "shared_experts.gate_proj"} <= _names(qwen)
    assert "gate" not in _names(qwen) and "shared_expert_gate" not in _names(qwen)


def test_explicit_names_match_the_family_first_and_aliases_only_otherwise() -> None:
    starcoder2 = {**_SMALL, "model_type": "starcoder2"}
    assert _names(starcoder2, ["c_proj"]) == {"c_proj"}  # the MLP down projection, not o_proj
    assert _names({**_SMALL, "model_type": "llama"}, ["c_proj"]) == {"o_proj"}  # Qwen-1's alias
    assert _names({**_SMALL, "model_type": "gpt_neox"}, ["query_key_value"]) == {"query_key_value"}
    assert _names({**_SMALL, "model_type": "phi"}, ["q_proj", "v_proj"]) == {"q_proj", "v_proj"}
    with pytest.raises(ScenarioError, match="match no linear layer"):
        _names({**_SMALL, "model_type": "gpt_neox"}, ["q_proj"])
