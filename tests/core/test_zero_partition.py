"""ZeRO-1/2 gradient partition of the most loaded rank (core/memory/zero_partition.py), held to real DeepSpeed.

Numbers measured with DeepSpeed 0.19.8 ranks on the CPU (vramplan/tracing/deepspeed_cpu.py, tiny Llama, world 2):
with one param group (``model.parameters()``, what HF passes when the DeepSpeed config has an ``optimizer``
block) ``grads_in_partition`` held 1,053,184 elements on rank 0 and 987,904 on rank 1; with HF Trainer's decay /
no-decay groups 987,904 on both (the boundary falls between layers; the 5 norms straddle: +128 each).
"""

from __future__ import annotations

from vramplan.api import load_scenario, model_from_config
from vramplan.core.memory.params import rank_params
from vramplan.core.memory.zero_partition import group_partitions, param_groups, zero12_grad_partition
from vramplan.core.model import Part
from vramplan.core.units import ceil_div

TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 688,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024,
        "max_position_embeddings": 256, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def _scn(n: int = 2, **parallel: object):
    spec = model_from_config(TINY, name="tiny-llama")
    return load_scenario({"model": "tiny-llama", "train": {"method": "full", "precision": "bf16-mixed"},
                          "hardware": {"gpu": "h100-80g", "gpus_per_node": n},
                          "parallel": {"engine": "deepspeed", "zero": 2, **parallel}}, model=spec)


def test_measured_single_group_and_hf_groups() -> None:
    scn = _scn()
    trains = frozenset(p for p in Part if scn.trains(p))
    (one,) = param_groups(scn.model, scn.train.method, frozenset(), 16, trains, 1)
    assert sum(one) == 1_975_552
    assert group_partitions(one, 2) == (1_053_184, 987_904)
    decay, nodecay = param_groups(scn.model, scn.train.method, frozenset(), 16, trains, 2)
    assert (sum(decay), sum(nodecay)) == (1_974_272, 1_280)
    assert [a + b for a, b in zip(group_partitions(decay, 2), group_partitions(nodecay, 2))] == [987_904] * 2
    assert zero12_grad_partition(scn, rank_params(scn).trainable, 2) == 987_904


def test_bounds_and_fallbacks() -> None:
    for n in (2, 3, 8, 64):
        scn = _scn(n)
        t = rank_params(scn).trainable
        g = zero12_grad_partition(scn, t, n)
        assert ceil_div(t, n) <= g <= ceil_div(t, n) + 2 * 1024 * 256 + 2 * 256
    scn = _scn(4, tp=2)
    assert zero12_grad_partition(scn, 1000, 2) == 500  # tensor parallelism: Ψ/N
