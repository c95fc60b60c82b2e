"""The OOM reports vramplan starts from (mgm.md §3): predicted OOM, and the breakdown says why."""

from __future__ import annotations

import copy

import pytest

from vramplan.core.units import GiB
from vramplan.registry.scenario_presets import builtin_scenario

from ..conftest import estimate_dict


def _scenario(name: str) -> dict:
    data = copy.deepcopy(builtin_scenario(name))
    data.pop("name")
    data.pop("description")
    return data


def test_mgm_2b_stage2_on_4x4090_is_oom_because_of_the_logits() -> None:
    """MGM #75: 'even 2B does not fit on 4x 4090' with the script's micro-batch 8 (ZeRO-2, seq 2048)."""
    est = estimate_dict(_scenario("mgm-2b-stage2"))
    assert not est.fits
    bd = est.peak.breakdown
    largest = max(bd.items, key=lambda k: bd[k])
    assert largest == "activations/logits_loss"
    # Gemma's 256k vocabulary: fp32 logits + cross-entropy ~ 12 B x tokens x vocab in backward.
    tokens = 8 * 2048
    assert bd["activations/logits_loss"] == 12 * tokens * 256_000
    # ZeRO-2 replicates the 16-bit weights of all 3.02B parameters (frozen towers included).
    assert bd["model_states/params"] == 2 * 3_019_166_144
    # Vision side of 8 images at 768 px aux resolution is several GiB (mgm.md §1.4: ~0.8 GiB/image).
    assert 4 * GiB < bd["activations/vision"] + bd["activations/projector"] < 10 * GiB


def test_mgm_2b_stage2_fits_with_the_fixes_that_worked() -> None:
    """The reporter fixed it with zero2_offload (MGM #49) and a smaller micro-batch."""
    data = _scenario("mgm-2b-stage2")
    data["train"]["micro_batch"] = 1
    data["parallel"]["offload_optimizer"] = "cpu"
    est = estimate_dict(data)
    assert est.fits, est.margin_bytes / GiB


@pytest.mark.parametrize("micro_batch", [1, 2, 4, 8])
def test_mgm_8x7b_stage2_under_zero3_on_6x4090_is_oom_at_every_micro_batch(micro_batch: int) -> None:
    data = _scenario("mgm-8x7b-stage2")
    data["train"]["micro_batch"] = micro_batch
    est = estimate_dict(data)
    assert not est.fits
    # Model states alone (16 B x 47.2B / 6) exceed a 24 GB card several times over.
    assert est.peak.breakdown.group("model_states") > 3 * est.capacity_bytes


def test_mgm_8x7b_zero3_gathers_a_whole_moe_block() -> None:
    """set_z3_leaf_modules: a Mixtral MoE block (8 experts x 3 x 4096 x 14336 = 1.41B params) at once."""
    data = _scenario("mgm-8x7b-stage2")
    data["train"]["micro_batch"] = 1
    est = estimate_dict(data)
    bwd = next(p for p in est.phases if p.phase == "backward").breakdown
    block = 8 * 3 * 4096 * 14336 + 8 * 4096
    assert bwd["buffers/gathered_params"] >= 4 * block  # params + their grads, 2 B each


def test_mgm_2b_hd_on_10x3090_with_offload_is_still_oom() -> None:
    """MGM #75 (teamwong111): 10x RTX 3090, 2B-HD, zero2_offload -> still CUDA OOM."""
    est = estimate_dict(_scenario("mgm-2b-hd-stage2"))
    assert not est.fits
