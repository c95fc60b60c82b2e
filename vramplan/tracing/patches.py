"""Process-wide adjustments the fake-tensor trace needs, each undone on exit.

Owns the context managers that make a CPU FakeTensorMode run behave like the CUDA run it stands for
(tracing-on-cpu.md §1, §6):

- ``fake_swap_tensors``: ``Module._apply`` (``.to(dtype)``, PEFT moving adapters) always swaps FakeTensor
  parameters with ``torch.utils.swap_tensors``, which refuses tensors that the fake mode's memo holds
  weakrefs to; the memo is cleared before each swap (§6 item 1).
- ``cuda_autocast_policy``: CPU autocast casts fewer ops to fp32 than CUDA autocast (layer_norm,
  softmax, log_softmax, pow, exp, sum ... stay 16-bit on CPU). The CUDA fp32 list
  (aten/src/ATen/autocast_mode.cpp, ``KERNEL_CUDA(..., fp32)``) is registered on the ``AutocastCPU`` key
  for the ops transformers models use, so that the fp32 copies autograd saves are the CUDA ones.
- ``cuda_dropout``: on CPU ``F.dropout`` multiplies by a noise tensor of the input's dtype and saves it; on
  CUDA it runs ``native_dropout``, which saves a bool mask (1 B per element). The trace calls
  ``native_dropout`` like the CUDA path.
- ``unequal_head_dims``: SDPA on CPU falls back to the O(s^2) math path (which also upcasts to fp32) when
  the value head dim differs from the query's (MLA: 192 vs 128); on CUDA, transformers' FlashAttention-2
  path pads the value to the query head dim and crops the output (integrations/flash_attention.py), and
  SDPA's mem-efficient kernel stays O(s). The trace pads like FA2 and runs the flash-like CPU kernel.
- ``quiet``: transformers' deprecation and use_cache warnings, and transformers' packed-sequence detection:
  ``masking_utils.find_packed_sequence_indices`` cannot read fake ``position_ids``, so it assumes a packed
  batch and materialises a 4-D mask (which also turns off native GQA in SDPA); a real run with one sequence
  per row gets ``None`` there, and so does the trace. ``torch._grouped_mm`` takes bf16 only; for other
  expert dtypes (fp32 weights under autocast) the trace uses transformers' own ``grouped_mm_fallback``
  custom op, which allocates the same output and saves the same tensors.

Imports torch (and transformers for the logger); nothing from vramplan.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._pytree import tree_map

CUDA_FP32_OPS: tuple[str, ...] = (
    "layer_norm", "native_layer_norm", "group_norm", "softmax.int", "log_softmax.int", "pow.Tensor_Scalar",
    "pow.Tensor_Tensor", "pow.Scalar", "exp", "log", "rsqrt", "reciprocal", "sum", "sum.dim_IntList",
    "prod", "cumsum", "norm.Scalar", "norm.ScalarOpt_dim", "logsumexp", "softplus", "mse_loss", "l1_loss",
    "nll_loss", "smooth_l1_loss", "kl_div", "binary_cross_entropy_with_logits",
)
"""Ops CUDA autocast runs in fp32 and CPU autocast does not (the ones decoder and ViT/ConvNeXt code calls)."""


@contextlib.contextmanager
def fake_swap_tensors(fake_mode: Any) -> Iterator[None]:
    """Let ``Module._apply`` swap FakeTensor parameters (clears the fake memo's weakrefs first)."""
    orig = torch.utils.swap_tensors

    def swap(t1: torch.Tensor, t2: torch.Tensor) -> None:
        fake_mode.fake_tensor_converter.meta_converter.tensor_memo.clear()
        orig(t1, t2)

    torch.utils.swap_tensors = swap  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.utils.swap_tensors = orig  # type: ignore[assignment]


def _cast_fp32(t: Any) -> Any:
    if isinstance(t, torch.Tensor) and t.dtype in (torch.bfloat16, torch.float16):
        return t.float()
    return t


@contextlib.contextmanager
def cuda_autocast_policy() -> Iterator[None]:
    """Register CUDA's fp32 autocast policy on the AutocastCPU key for ``CUDA_FP32_OPS`` (undone on exit)."""
    lib = torch.library.Library("aten", "IMPL")
    exclude = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)

    def make(op: Any) -> Any:
        def kernel(*args: Any, **kwargs: Any) -> Any:
            with torch._C._ExcludeDispatchKeyGuard(exclude):
                return op(*tree_map(_cast_fp32, args), **tree_map(_cast_fp32, kwargs))

        return kernel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in CUDA_FP32_OPS:
            base, _, overload = name.partition(".")
            packet = getattr(torch.ops.aten, base, None)
            op = getattr(packet, overload or "default", None) if packet is not None else None
            if op is not None:
                lib.impl(name, make(op), "AutocastCPU")
    try:
        yield
    finally:
        lib._destroy()


@contextlib.contextmanager
def cuda_dropout() -> Iterator[None]:
    """``F.dropout`` as on CUDA: ``native_dropout`` with a bool mask (module docstring)."""
    functional = torch.nn.functional
    orig = functional.dropout

    def dropout(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
        if not training or p == 0.0:
            return input
        if p == 1.0 or inplace:
            return orig(input, p, training, inplace)
        return torch.native_dropout(input, p, True)[0]

    functional.dropout = dropout  # type: ignore[assignment]
    try:
        yield
    finally:
        functional.dropout = orig  # type: ignore[assignment]


@contextlib.contextmanager
def unequal_head_dims() -> Iterator[None]:
    """SDPA with a value head dim below the query's: pad, attend, crop (module docstring)."""
    functional = torch.nn.functional
    orig = functional.scaled_dot_product_attention

    def sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        dq, dv = query.shape[-1], value.shape[-1]
        if dv >= dq:
            return orig(query, key, value, *args, **kwargs)
        out = orig(query, key, functional.pad(value, [0, dq - dv]), *args, **kwargs)
        return out[..., :dv]

    functional.scaled_dot_product_attention = sdpa  # type: ignore[assignment]
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = orig  # type: ignore[assignment]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings and transformers' info/warning logs while tracing; set the env the trace needs."""
    saved = os.environ.get("TRANSFORMERS_DISABLE_TORCH_CHECK")
    # VLM merges call torch_compilable_check(... .item()), data-dependent on fake tensors (§6 item 3).
    os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = "1"
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    from transformers import masking_utils
    from transformers.integrations import moe

    packed = masking_utils.find_packed_sequence_indices
    masking_utils.find_packed_sequence_indices = lambda position_ids: None
    can_grouped = moe._can_use_grouped_mm
    moe._can_use_grouped_mm = lambda input, weight, offs: weight.dtype == torch.bfloat16
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        masking_utils.find_packed_sequence_indices = packed
        moe._can_use_grouped_mm = can_grouped
        logger.setLevel(level)
        if saved is None:
            os.environ.pop("TRANSFORMERS_DISABLE_TORCH_CHECK", None)
        else:
            os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = saved
