"""The optimizer a scenario names, built the way the CUDA run builds it.

Owns ``make_optimizer``: torch ``AdamW`` with ``foreach=True`` (HF ``adamw_torch``; on CUDA foreach is the
default, on CPU it is not, so it is passed explicitly — tracing-on-cpu.md §6 item 5) or ``fused=True``;
torch ``SGD`` without momentum (HF ``sgd``); transformers ``Adafactor`` with HF Trainer's arguments
(``scale_parameter=False, relative_step=False``); and ``AdamW8bitStandIn`` for bitsandbytes 8-bit AdamW,
whose ``step`` cannot run on fake tensors (``.item()``, §6 item 8): it holds bitsandbytes' state layout —
two uint8 states plus one fp32 absmax per 256-element block for tensors of at least ``min_8bit_size`` =
4096 elements, fp32 states below that (bitsandbytes ``Optimizer8bit.init_state``) — and updates in place,
as the fused CUDA kernel does. Imports torch (transformers for Adafactor) and ``vramplan.core``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..core.scenario import Optimizer, Scenario

BNB_MIN_8BIT_SIZE = 4096
BNB_BLOCK = 256


class AdamW8bitStandIn(torch.optim.Optimizer):
    """bitsandbytes ``AdamW8bit`` state bytes and an in-place step (module docstring)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-4) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        """Create the states on first use; the update itself allocates nothing (fused kernel)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    if p.numel() >= BNB_MIN_8BIT_SIZE:
                        state["state1"] = torch.zeros_like(p, dtype=torch.uint8)
                        state["state2"] = torch.zeros_like(p, dtype=torch.uint8)
                        blocks = -(-p.numel() // BNB_BLOCK)
                        state["absmax1"] = torch.zeros(blocks, dtype=torch.float32, device=p.device)
                        state["absmax2"] = torch.zeros(blocks, dtype=torch.float32, device=p.device)
                    else:
                        state["state1"] = torch.zeros_like(p, dtype=torch.float32)
                        state["state2"] = torch.zeros_like(p, dtype=torch.float32)
                p.add_(p.grad, alpha=-group["lr"])


def make_optimizer(scn: Scenario, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The scenario's optimizer over ``params`` (module docstring)."""
    opt = scn.train.optimizer
    if opt is Optimizer.ADAMW:
        return torch.optim.AdamW(params, lr=1e-5, foreach=True)
    if opt is Optimizer.ADAMW_FUSED:
        return torch.optim.AdamW(params, lr=1e-5, fused=True)
    if opt is Optimizer.SGD:
        return torch.optim.SGD(params, lr=1e-5, momentum=0.0, foreach=True)
    if opt is Optimizer.ADAFACTOR:
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=1e-5, scale_parameter=False, relative_step=False, warmup_init=False)
    return AdamW8bitStandIn(params, lr=1e-5)


def state_tensors(optimizer: torch.optim.Optimizer) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(device states, host-side scalars): AdamW keeps ``step`` on the CPU unless fused or capturable, so
    0-dim step tensors of a non-fused optimizer are not GPU memory."""
    fused = any(g.get("fused") for g in optimizer.param_groups)
    device, host = [], []
    for state in optimizer.state.values():
        for name, value in state.items():
            if not isinstance(value, torch.Tensor):
                continue
            if name == "step" and value.dim() == 0 and not fused:
                host.append(value)
            else:
                device.append(value)
    return device, host


def step_and_file_states(optimizer: Any, tracker: Any) -> None:
    """optimizer.step(); zero_grad(set_to_none=True); file the device states, forget the host ones."""
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    device, host = state_tensors(optimizer)
    tracker.track_existing(device, "model_states/optimizer")
    for t in host:
        tracker.forget(t)
