"""Step-time model: each term moves the way its documented cause says."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vramplan.core.scenario import GradCkpt, Method, Offload
from vramplan.core.steptime import estimate_step_time
from vramplan.registry import load_gpu

from .helpers import builtin, preset


def test_terms_are_positive_and_add_up() -> None:
    st = estimate_step_time(builtin("mgm-2b-stage2"))
    assert st.compute_s > 0 and st.comm_s > 0 and st.total_s > 0
    assert st.total_s == pytest.approx(st.compute_s + st.comm_s + st.offload_s + st.optimizer_s - st.hidden_s)
    assert st.tokens_per_step == 8 * 2 * 4 * 2048
    assert st.tokens_per_s == pytest.approx(st.tokens_per_step / st.total_s)
    assert any("MFU" in a for a in st.assumptions)
    assert any("no P2P" in a for a in st.assumptions)


def test_full_checkpointing_costs_a_forward_more() -> None:
    scn = builtin("mgm-2b-stage2")
    none = estimate_step_time(replace(scn, train=replace(scn.train, grad_ckpt=GradCkpt.NONE)))
    full = estimate_step_time(replace(scn, train=replace(scn.train, grad_ckpt=GradCkpt.FULL)))
    assert 1.2 < full.flops_per_rank / none.flops_per_rank < 1.4  # 8N / 6N plus attention and vision


def test_compute_matches_six_n_t_for_a_text_model() -> None:
    scn = preset("llama-3.1-8b", "h100-80g", 8, micro_batch=1, seq_len=4096, grad_ckpt="none")
    st = estimate_step_time(scn)
    n = scn.model.decoder.num_params - scn.model.decoder.embedding_numel
    six_nt = 6 * n * 4096
    assert six_nt < st.flops_per_rank < 1.3 * six_nt  # + 12 L H Q T attention term


def test_offload_adds_cpu_optimizer_time() -> None:
    scn = builtin("mgm-2b-stage2")
    off = replace(scn, parallel=replace(scn.parallel, offload_optimizer=Offload.CPU))
    assert estimate_step_time(off).offload_s > 0
    assert estimate_step_time(scn).offload_s == 0
    assert any("CPU Adam" in a for a in estimate_step_time(off).assumptions)


def test_nvlink_communicates_faster_than_host_staged_pcie() -> None:
    scn = builtin("mgm-8x7b-stage2")
    a100 = replace(scn, cluster=replace(scn.cluster, gpu=load_gpu("a100-80g")))
    assert estimate_step_time(a100).comm_s < estimate_step_time(scn).comm_s / 5


def test_lora_backward_skips_weight_gradients() -> None:
    scn = preset("llama-3.1-8b", "a100-80g", 4, grad_ckpt="none")
    lora = replace(scn, train=replace(scn.train, method=Method.LORA))
    assert estimate_step_time(lora).flops_per_rank < 0.8 * estimate_step_time(scn).flops_per_rank


def test_zero3_moves_more_than_zero2() -> None:
    scn = builtin("mgm-2b-stage2")
    z3 = replace(scn, parallel=replace(scn.parallel, zero=3))
    assert estimate_step_time(z3).comm_s > estimate_step_time(scn).comm_s


def test_custom_gpu_uses_reference_figures_and_says_so() -> None:
    scn = preset("mgm-2b", "24GiB", 4)
    st = estimate_step_time(scn)
    assert st.total_s > 0
    assert any("no FLOP/s" in a for a in st.assumptions)
