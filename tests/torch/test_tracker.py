"""The lean tracker on fake tensors: 512 B rounding, frees, re-filing, phases, FSDP-style resizes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch._subclasses.fake_tensor import FakeTensorMode

from vramplan.tracing.tracker import StorageTracker, round_block

pytestmark = pytest.mark.torch


def test_round_block_is_the_cuda_allocators_512_bytes() -> None:
    assert [round_block(n) for n in (0, 1, 512, 513, 4096)] == [0, 512, 512, 1024, 4096]


def test_allocations_frees_views_and_peaks_per_phase() -> None:
    with FakeTensorMode():
        tr = StorageTracker()
        with tr:
            tr.set_phase("forward", 0)
            a = torch.empty(1000, dtype=torch.float32)  # 4000 B -> 4096
            view = a[:10]
            b = torch.empty(10, dtype=torch.bfloat16)  # 20 B -> 512
            assert tr.now["activations/llm"] == 4096 + 512
            del a, b
            assert tr.now["activations/llm"] == 4096  # the view keeps the storage alive
            del view
            assert tr.total == 0
            tr.set_phase("backward", 0)
            tr.end_logits_backward()
            c = torch.empty(256, dtype=torch.float32)
            assert tr.now["temporaries/backward"] == 1024
            tr.retag(c, "model_states/grads")
            assert tr.now["temporaries/backward"] == 0 and tr.now["model_states/grads"] == 1024
        tr.close()
    assert tr.peak("forward", 0).total == 4096 + 512
    assert tr.peak("backward", 0).items["temporaries/backward"] == 1024


def test_parts_logits_and_override() -> None:
    with FakeTensorMode():
        head = torch.nn.Linear(8, 16)
        body = torch.nn.Linear(8, 8)
        tr = StorageTracker()
        tr.attach_part(body, "vision")
        tr.attach_logits(head)
        x = torch.empty(4, 8)
        with tr:
            tr.set_phase("forward", 0)
            with torch.no_grad():
                v = body(x)
                logits = head(v)
            assert tr.now["activations/vision"] > 0 and tr.now["activations/logits_loss"] > 0
            with tr.override("buffers/gathered_params"):
                g = torch.empty(128)
            assert tr.now["buffers/gathered_params"] == 512
            st = g.untyped_storage()
            st.resize_(1024)  # FSDP2 refills unsharded parameters by resizing storages
            assert tr.now["buffers/gathered_params"] == 1024
            del v, logits, g, st
        tr.close()


def test_forget_keeps_host_side_scalars_out() -> None:
    with FakeTensorMode():
        tr = StorageTracker()
        with tr:
            tr.set_phase("optimizer", 0)
            step = torch.zeros(())
            tr.forget(step)
            step.add_(1)  # in-place on the forgotten storage is not counted again
            assert tr.total == 0
        tr.close()
