"""Every doctor rule fires on a setup that has its problem and stays quiet on one that does not."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from doctor_helpers import MGM_2B, TRAIN, make_ctx, zero

from vramplan.adapters.launch_script import read_launch_script
from vramplan.doctor import ALL_RULES, build_context, rule_by_id
from vramplan.doctor.types import DoctorContext, Severity

MIXTRAL = {"model": "mixtral-8x7b", "gpus": "8xa100-80g"}
LORA = "--lora_enable True --lora_r 16"
OFFLOAD = {"device": "cpu", "pin_memory": True}


def mgm_2b(**kw) -> DoctorContext:
    return build_context(read_launch_script(MGM_2B), gpus=kw.pop("gpus", "4xrtx4090"), **kw)


CASES: dict[str, tuple[Callable[[], DoctorContext], Callable[[], DoctorContext]]] = {
    "DS001": (lambda: make_ctx(ds=zero(2, offload_param=OFFLOAD)),
              lambda: make_ctx(ds=zero(3, offload_param=OFFLOAD))),
    "DS002": (lambda: make_ctx(ds=zero(2, offload_optimizer={"device": "nvme", "nvme_path": "/nvme"})),
              lambda: make_ctx(ds=zero(2, offload_optimizer={"device": "cpu"}))),
    "DS003": (lambda: make_ctx(ds=zero(2, offload_optimizer=OFFLOAD)),
              lambda: make_ctx(ds={**zero(2, offload_optimizer=OFFLOAD), "optimizer": {"type": "AdamW", "params": {}}})),
    "DS004": (lambda: make_ctx(ds=zero(2), **MIXTRAL),
              lambda: make_ctx(ds=zero(3), **MIXTRAL)),
    "DS005": (lambda: make_ctx(ds=zero(2, reduce_bucket_size=5e8, overlap_comm=True), gpus="4xrtx4090"),
              lambda: make_ctx(ds=zero(2, reduce_bucket_size=5e8), gpus="4xa100-80g")),
    "DS006": (lambda: make_ctx(ds=zero(3, stage3_prefetch_bucket_size=15099494.4)),
              lambda: make_ctx(ds=zero(3, stage3_prefetch_bucket_size=15099494))),
    "DS007": (lambda: make_ctx(ds={**zero(2), "train_micro_batch_size_per_gpu": 4}),
              lambda: make_ctx(ds=zero(2))),
    "DS008": (lambda: make_ctx("--fp16 True", ds=zero(2)),
              lambda: make_ctx(ds=zero(2))),
    "DS009": (lambda: make_ctx(ds=zero(2), gpus="4xv100-32g"),
              lambda: make_ctx(ds=zero(2), gpus="4xa100-40g")),
    "DS010": (lambda: make_ctx("--bf16 False --fp16 True", ds=zero(2)),
              lambda: make_ctx("--bf16 False --fp16 True", ds=zero(2), gpus="4xv100-32g")),
    "DS011": (lambda: make_ctx(ds=zero(3), **MIXTRAL),
              lambda: make_ctx(ds=zero(3), env={"ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES": "MixtralSparseMoeBlock"},
                               **MIXTRAL)),
    "DS012": (lambda: make_ctx(ds=zero(3), launcher="deepspeed mgm/train/train_mem.py", **MIXTRAL),
              lambda: make_ctx(ds=zero(2), launcher="deepspeed mgm/train/train_mem.py", **MIXTRAL)),
    "DS013": (lambda: make_ctx(LORA + " --gradient_checkpointing_kwargs '{\"use_reentrant\": false}'", ds=zero(3)),
              lambda: make_ctx(LORA + " --gradient_checkpointing_kwargs '{\"use_reentrant\": true}'", ds=zero(3))),
    "DS014": (lambda: make_ctx(ds=zero(3, stage3_gather_16bit_weights_on_model_save=False)),
              lambda: make_ctx(ds=zero(3, stage3_gather_16bit_weights_on_model_save=True), host_ram="512GB")),
    "DS015": (lambda: make_ctx(ds={**zero(2), "activation_checkpointing": {"partition_activations": True}}),
              lambda: make_ctx(ds=zero(2))),
    "DS016": (lambda: make_ctx(ds=zero(3, offload_param={"device": "nvme"}), gpus="1xa100-80g"),
              lambda: make_ctx(ds=zero(3, offload_param={"device": "nvme"}), gpus="2xa100-80g")),
    "DS017": (lambda: make_ctx(ds=zero(3, offload_optimizer=OFFLOAD, offload_param=OFFLOAD), host_ram="64GB"),
              lambda: make_ctx(ds=zero(3, offload_optimizer=OFFLOAD, offload_param=OFFLOAD), host_ram="4TB")),
    "DS018": (lambda: make_ctx(ds=zero(3, zero_hpz_partition_size=8), gpus="16xa100-80g"),
              lambda: make_ctx(ds=zero(3), gpus="16xa100-80g")),
    "TR001": (lambda: make_ctx(ds=zero(2), train=TRAIN.replace("--gradient_checkpointing True", "")),
              lambda: make_ctx(ds=zero(2))),
    "TR002": (lambda: make_ctx("--attn_implementation eager", ds=zero(2)),
              lambda: make_ctx(ds=zero(2))),
    "TR003": (lambda: mgm_2b(),
              lambda: make_ctx(ds=zero(2))),
    "TR004": (lambda: make_ctx("--evaluation_strategy steps --per_device_eval_batch_size 4", ds=zero(2)),
              lambda: make_ctx("--evaluation_strategy steps --eval_accumulation_steps 1", ds=zero(2))),
    "TR005": (lambda: make_ctx(launcher="torchrun --nproc_per_node 2 train.py", **MIXTRAL),
              lambda: make_ctx("--ddp_find_unused_parameters True", launcher="torchrun --nproc_per_node 2 train.py",
                               **MIXTRAL)),
    "TR006": (lambda: mgm_2b(),
              lambda: make_ctx(ds=zero(2))),
    "HW001": (lambda: make_ctx(ds=zero(2), gpus="4xrtx4090"),
              lambda: make_ctx(ds=zero(2), gpus="4xrtx4090", env={"NCCL_P2P_DISABLE": "1"})),
    "HW002": (lambda: make_ctx(ds=zero(2), launcher="CUDA_VISIBLE_DEVICES=0,1 deepspeed --include localhost:2,3 train.py",
                               gpus="a100-80g"),
              lambda: make_ctx(ds=zero(2), launcher="CUDA_VISIBLE_DEVICES=0,1 deepspeed train.py", gpus="a100-80g")),
    "HW003": (lambda: make_ctx(ds=zero(2), launcher="deepspeed --include localhost:0,1 train.py", gpus="4xa100-80g"),
              lambda: make_ctx(ds=zero(2), launcher="deepspeed --include localhost:0,1 train.py", gpus="a100-80g")),
    "HW004": (lambda: make_ctx(ds=zero(2), host_ram="16GB"),
              lambda: make_ctx(ds=zero(2), host_ram="512GB")),
}


def test_every_rule_has_cases_and_evidence():
    assert set(CASES) == {r.id for r in ALL_RULES}
    for r in ALL_RULES:
        assert r.evidence and all(url.startswith("https://") for url in r.evidence), r.id
        assert r.title and r.explanation and r.severity in Severity


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires(rule_id):
    finding = rule_by_id(rule_id).check(CASES[rule_id][0]())
    assert finding is not None, f"{rule_id} did not fire"
    assert finding.rule_id == rule_id and finding.explanation and finding.evidence


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_stays_quiet(rule_id):
    assert rule_by_id(rule_id).check(CASES[rule_id][1]()) is None


def test_severity_variants_and_fix_contents():
    client = rule_by_id("DS003").check(make_ctx("--optim adafactor", ds=zero(2, offload_optimizer=OFFLOAD)))
    assert client.severity is Severity.ERROR
    assert client.fix.changes[0].key == "optimizer" and client.fix.changes[0].value["type"] == "AdamW"
    auto_prefetch = rule_by_id("DS006").check(make_ctx(ds=zero(3, stage3_prefetch_bucket_size="auto")))
    assert auto_prefetch.severity is Severity.INFO and auto_prefetch.fix.changes[0].value == int(0.9 * 4096**2)
    reentrant_unset = rule_by_id("DS013").check(make_ctx(LORA, ds=zero(3)))
    assert reentrant_unset.severity is Severity.INFO
    ratio = rule_by_id("DS002").check(make_ctx(ds=zero(2, offload_optimizer={"device": "cpu", "ratio": 0.5})))
    assert ratio is not None and ratio.fix.changes[0].remove
    small_host = rule_by_id("DS014").check(make_ctx(ds=zero(3, stage3_gather_16bit_weights_on_model_save=True),
                                                    host_ram="32GB"))
    assert small_host is not None and "rank 0" in small_host.explanation
    sub_group = rule_by_id("DS016").check(make_ctx(ds=zero(3, offload_optimizer={"device": "nvme"}), gpus="2xa100-80g"))
    assert sub_group.severity is Severity.WARNING and sub_group.fix.changes[0].value == 100_000_000
    sdpa_on_v100 = rule_by_id("TR002").check(make_ctx("--attn_implementation eager --bf16 False --fp16 True",
                                                      ds=zero(2), gpus="4xv100-32g"))
    assert sdpa_on_v100.fix.changes[0].value == "sdpa"
    frozen_lora = rule_by_id("DS004").check(make_ctx(LORA, ds=zero(2), gpus="4xrtx4090"))
    assert frozen_lora is not None and "frozen" in frozen_lora.explanation
    assert rule_by_id("HW001").check(make_ctx(ds=zero(2), gpus="1xrtx4090")) is None  # one GPU: no NCCL traffic
    assert rule_by_id("DS011").check(make_ctx(ds=zero(3), launcher="deepspeed mgm/train/train_mem.py", **MIXTRAL)) is None
