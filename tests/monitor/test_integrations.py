"""Hugging Face Trainer and Lightning callbacks on the CPU (real frameworks where installed; a stub otherwise)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from vramplan.monitor import FakeSource, Sample
from vramplan.monitor.lightning import LightningMemoryLogic


def _phases(run_dir: Path, rank: int = 0) -> list[tuple[int, str]]:
    recs = [json.loads(line) for line in (run_dir / f"memory_rank{rank}.jsonl").read_text().splitlines()]
    return [(r["step"], r["phase"]) for r in recs if r["kind"] == "phase"]


def test_lightning_logic_with_a_stub_trainer(tmp_path: Path) -> None:
    cb = LightningMemoryLogic(tmp_path, source=FakeSource([Sample(allocated_bytes=1, reserved_bytes=1)]))
    trainer = SimpleNamespace(global_rank=1, world_size=2, global_step=0, optimizers=[])
    cb.on_fit_start(trainer, None)
    for batch_idx in range(6):  # accumulate_grad_batches=2: the optimizer steps every second batch
        cb.on_train_batch_start(trainer, None, None, batch_idx)
        cb.on_before_backward(trainer, None, None)
        if batch_idx % 2 == 1:
            cb.on_before_optimizer_step(trainer, None, None)
            trainer.global_step += 1
        cb.on_train_batch_end(trainer, None, None, None, batch_idx)
    cb.on_fit_end(trainer, None)
    phases = _phases(tmp_path, rank=1)
    assert phases == [(s, p) for s in range(3) for p in ("forward", "backward", "optimizer")]
    summary = json.loads((tmp_path / "summary_rank1.json").read_text())
    assert summary["steps"] == 3 and summary["world_size"] == 2


def test_lightning_on_exception_records_it(tmp_path: Path) -> None:
    cb = LightningMemoryLogic(tmp_path, source=FakeSource([1]))
    trainer = SimpleNamespace(global_rank=0, world_size=1, global_step=0, optimizers=[])
    cb.on_fit_start(trainer, None)
    cb.on_train_batch_start(trainer, None, None, 0)
    cb.on_exception(trainer, None, RuntimeError("boom"))
    assert json.loads((tmp_path / "summary_rank0.json").read_text())["steps"] == 1


@pytest.mark.torch
def test_real_lightning_trainer(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    import lightning as L
    import torch

    from vramplan.monitor.lightning import VramplanLightningCallback

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            return self.net(batch[0]).pow(2).mean()

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 8)), batch_size=4)
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[VramplanLightningCallback(tmp_path)])
    trainer.fit(Tiny(), data)
    assert _phases(tmp_path) == [(s, p) for s in range(4) for p in ("forward", "backward", "optimizer")]


@pytest.mark.torch
def test_hf_trainer_callback(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    import torch

    from vramplan.monitor.hf_callback import VramplanCallback

    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(cfg)
    rows = [{"input_ids": torch.randint(0, 128, (16,)), "labels": torch.randint(0, 128, (16,))} for _ in range(24)]
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=5, per_device_train_batch_size=2,
                                          gradient_accumulation_steps=2, report_to=[], use_cpu=True,
                                          save_strategy="no", logging_strategy="no", disable_tqdm=True)
    callback = VramplanCallback(tmp_path / "run")
    transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback]).train()
    phases = _phases(tmp_path / "run")
    assert phases == [(s, p) for s in range(5) for p in ("forward", "backward", "optimizer")]
    recs = [json.loads(line) for line in (tmp_path / "run" / "memory_rank0.jsonl").read_text().splitlines()]
    assert {r["micro_steps"] for r in recs if r["kind"] == "phase" and r["phase"] == "forward"} == {2}
    assert json.loads((tmp_path / "run" / "summary_rank0.json").read_text())["steps"] == 5


def test_hf_callback_never_breaks_training_when_the_folder_is_taken(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from vramplan.monitor.hf_callback import VramplanCallback

    (tmp_path / "memory_rank0.jsonl").write_text("{}\n")
    cb = VramplanCallback(tmp_path)
    args = SimpleNamespace(output_dir=str(tmp_path), process_index=0, world_size=1)
    cb.on_train_begin(args, None, None, model=None)
    cb.on_step_begin(args, None, None)
    cb.on_step_end(args, None, None)
    cb.on_train_end(args, None, None)
    assert cb.monitor is None and (tmp_path / "memory_rank0.jsonl").read_text() == "{}\n"
