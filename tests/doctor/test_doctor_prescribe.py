"""Prescriptions on MGM issue #75's setups: the 2B fix that fits, and the honest 8x7B answer."""

from __future__ import annotations

from doctor_helpers import MGM_8X7B, make_ctx, zero

from vramplan.core.estimate import estimate_scenario
from vramplan.core.scenario import Method
from vramplan.doctor import run_doctor
from vramplan.doctor.prescribe import prescribe


def test_mgm_2b_zero2_on_4x4090_is_oom_and_names_the_largest_contributors(report_2b):
    est = report_2b.context.estimate
    assert not est.fits and est.device_used_bytes > est.usable_bytes
    peak = est.peak.breakdown
    largest = max(peak.items, key=lambda k: peak[k])
    assert largest == "activations/logits_loss"  # Gemma's 256k vocabulary (mgm.md §5.2)
    assert report_2b.context.model_ref == "mgm-2b" and report_2b.context.ds.zero_stage == 2
    assert any(f.rule_id == "TR003" for f in report_2b.findings)


def test_mgm_2b_prescribed_fix_fits_and_is_the_estimator_on_the_modified_scenario(report_2b):
    best = report_2b.prescription.best
    assert best is not None and best.fits
    assert best.peak_bytes <= best.estimate.usable_bytes
    again = estimate_scenario(best.scenario)
    assert again.device_used_bytes == best.peak_bytes  # the prediction is a real estimator run
    t0, t1 = report_2b.context.scenario.train, best.scenario.train
    assert t1.method is Method.FULL and best.scenario.cluster == report_2b.context.scenario.cluster
    assert t1.micro_batch * t1.grad_accum == t0.micro_batch * t0.grad_accum  # global batch kept
    assert best.changes and all(c.target in ("script", "ds_config", "env") for c in best.changes)


def test_ranking_puts_fitting_options_first_then_least_change(report_2b):
    ranked = report_2b.prescription.ranked
    fits = [o.fits for o in ranked]
    assert fits == sorted(fits, reverse=True)
    costs = [o.cost for o in ranked if o.fits]
    assert costs == sorted(costs)
    singles = report_2b.prescription.singles
    assert {"zero3", "offload_optimizer", "chunked_loss", "micro_batch_1"} <= {o.ids[0] for o in singles}
    # micro-batch 8 -> 1 alone brings the peak to ~22.1 GiB (the trace agrees), under 22.94 usable.
    assert any(o.fits for o in singles if o.ids[0] == "micro_batch_1")
    assert all(len(o.ids) >= 2 for o in report_2b.prescription.combos)
    assert not report_2b.alternatives  # a full fine-tuning fix exists: no alternatives needed


def test_mgm_8x7b_on_6x4090_nothing_keeping_full_finetuning_fits(report_8x7b):
    ctx = report_8x7b.context
    assert ctx.model_ref == "mgm-8x7b" and ctx.scenario.cluster.world_size == 6
    assert not ctx.estimate.fits
    options = report_8x7b.prescription.ranked
    assert options and not any(o.fits for o in options)
    assert all(o.scenario.train.method is Method.FULL and o.scenario.cluster == ctx.scenario.cluster for o in options)
    offloaded = [o for o in options if "offload_param" in o.ids]
    assert offloaded and all(o.estimate.fits_gpu and o.estimate.fits_host is False for o in offloaded)


def test_mgm_8x7b_honest_alternatives_with_numbers(report_8x7b):
    alts = report_8x7b.alternatives
    kinds = {o.kind for o in alts}
    assert {"lora", "qlora", "more_gpus", "bigger_gpus"} <= kinds
    for o in alts:
        assert o.peak_bytes > 0 and o.estimate.usable_bytes > 0
    qlora = next(o for o in alts if o.kind == "qlora")
    assert qlora.scenario.train.method is Method.QLORA and qlora.scenario.cluster.world_size == 6
    more = next(o for o in alts if o.kind == "more_gpus")
    assert more.fits and more.scenario.cluster.gpu.id == "rtx4090" and more.scenario.cluster.world_size > 6
    bigger = [o for o in alts if o.kind == "bigger_gpus"]
    assert any(o.scenario.cluster.gpu.id == "a100-80g" and o.fits for o in bigger)
    assert report_8x7b.option_to_apply() in [o for o in alts if o.kind in ("lora", "qlora") and o.fits]


def test_8x7b_without_host_ram_assumes_some_and_still_finds_nothing():
    report = run_doctor(script=MGM_8X7B, gpus="6xrtx4090", with_alternatives=False)
    assert report.context.host_ram_assumed
    assert not report.prescription.any_fits and report.alternatives == ()


def test_healthy_setup_fits_and_singles_only():
    ctx = make_ctx(ds=zero(2), gpus="8xa100-80g")
    assert ctx.estimate.fits
    p = prescribe(ctx)
    assert p.combos == () and p.best is not None
