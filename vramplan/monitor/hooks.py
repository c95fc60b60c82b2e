"""What the monitor reads from torch objects without importing torch: OOM errors and the tensor to hook for backward.

torch is looked up in ``sys.modules`` only, so the monitor's core works (and costs nothing) where torch
was never imported.
"""

from __future__ import annotations

from typing import Any, Mapping


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is a CUDA out-of-memory error (``torch.cuda.OutOfMemoryError`` or its message)."""
    try:
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except Exception:
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower() and "cuda" in str(exc).lower()


def first_grad_tensor(output: Any) -> Any:
    """The first tensor in ``output`` that requires grad (loss first for HF ``ModelOutput``)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if isinstance(output, torch.Tensor):
        return output if output.requires_grad else None
    if isinstance(output, Mapping):
        loss = output.get("loss")
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            return loss
        values: Any = output.values()
    elif isinstance(output, (list, tuple)):
        values = output
    else:
        return None
    for value in values:
        found = first_grad_tensor(value)
        if found is not None:
            return found
    return None
