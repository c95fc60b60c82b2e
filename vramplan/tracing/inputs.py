"""One micro-batch of fake inputs for a built model, and the forward call that returns only the loss.

Owns the input layout per model kind: token ids and labels of ``micro_batch x seq_len`` (image tokens
included, as ``train.seq_len`` counts them), an all-ones padding mask when the scenario's attention is
``sdpa`` (build.py docstring), pixel tensors of ``micro_batch x images_per_sample`` images at the towers'
resolutions (MGM-HD: ``image_grid``^2 crops plus the global view per image), in the towers' weight dtype.
The forward returns ``outputs.loss`` and drops the outputs, as HF Trainer's ``compute_loss`` does, so the
16-bit logits are freed before backward. Imports torch and ``vramplan.core``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core.errors import VramplanError
from ..core.scenario import Attention, Scenario


def _dtype_of(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.bfloat16


def make_inputs(scn: Scenario, model: nn.Module, kind: str) -> tuple[dict[str, Any], Callable[[], torch.Tensor]]:
    """(inputs, forward) for one micro-batch of ``scn`` on ``model`` of ``kind`` (see build._kind)."""
    b, s = scn.train.micro_batch, scn.train.seq_len
    vocab = scn.model.decoder.vocab_size
    ips = scn.train.images_per_sample if scn.model.is_vlm else 0
    image_tokens = ips * scn.model.image_tokens
    if ips and s <= image_tokens:
        raise VramplanError(f"train.seq_len={s} must exceed the {image_tokens} image tokens of {ips} image(s) "
                            "per sample for the trace (seq_len counts image tokens)")
    labels = torch.randint(0, vocab, (b, s))
    mask = torch.ones(b, s, dtype=torch.long) if scn.train.attention is Attention.SDPA else None
    inputs: dict[str, Any] = {"labels": labels}
    if kind == "decoder" or ips == 0:
        llm = getattr(model, "llm", model)
        inputs.update(input_ids=torch.randint(0, vocab, (b, s)), attention_mask=mask)

        def forward() -> torch.Tensor:
            return llm(**inputs, use_cache=False).loss

        return inputs, forward
    if kind == "llava_hf":
        cfg = model.config
        vis = cfg.vision_config
        inputs.update(input_ids=torch.randint(0, vocab, (b, s)), attention_mask=mask,
                      pixel_values=torch.empty(b * ips, vis.num_channels, vis.image_size, vis.image_size,
                                               dtype=_dtype_of(model.model.vision_tower)))

        def forward_llava() -> torch.Tensor:
            return model(**inputs, use_cache=False).loss

        return inputs, forward_llava
    if kind == "qwen_vl":
        return _qwen_vl_inputs(scn, model, inputs, mask)
    if kind == "gemma3":
        return _gemma3_inputs(scn, model, inputs, mask)
    if kind == "llava_next":
        return _llava_next_inputs(scn, model, inputs, mask)
    # composed MGM / original LLaVA
    clip_cfg = model.vision_tower.vision_tower.config
    side = clip_cfg.image_size
    n = b * ips
    grid = getattr(model, "image_grid", 1)
    shape: tuple[int, ...] = (n, 3, side, side)
    if grid > 1:
        shape = (n, grid * grid + (1 if model.image_global else 0), 3, side, side)
    inputs.update(input_ids=torch.randint(0, vocab, (b, s - image_tokens)),
                  images=torch.empty(shape, dtype=_dtype_of(model.vision_tower)))
    if model.vision_tower_aux is not None:
        aux = int(scn.model.tower("vision_aux").image_size)  # type: ignore[union-attr]
        inputs["images_aux"] = torch.empty(n, 3, aux, aux, dtype=_dtype_of(model.vision_tower_aux))
    if mask is not None:
        inputs["attention_mask"] = mask

    def forward_composed() -> torch.Tensor:
        return model(**inputs).loss

    return inputs, forward_composed


def _qwen_vl_inputs(scn: Scenario, model: nn.Module, inputs: dict[str, Any],
                    mask: torch.Tensor | None) -> tuple[dict[str, Any], Callable[[], torch.Tensor]]:
    """Qwen2-VL / Qwen2.5-VL: ``image_tokens`` placeholder ids per image inside ``seq_len``, the processor's
    flattened patches (``grid_t x grid_h x grid_w`` rows of ``C x temporal x patch x patch``, one temporal
    patch per still image), text-only 3-D RoPE positions (the values do not change a byte), and the vision
    metadata the processor's ``image_grid_thw`` stands for, precomputed from Python ints (vlm.py)."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from .vlm import qwen_vl_vision_kwargs

    b, s = scn.train.micro_batch, scn.train.seq_len
    tower = scn.model.tower("vision")
    assert tower is not None
    grid_w = tower.image_size // tower.patch_size
    grid_h = tower.num_patches // grid_w
    n = b * scn.train.images_per_sample
    visual = model.model.visual
    vis = visual.config
    row = vis.in_channels * vis.temporal_patch_size * vis.patch_size ** 2
    inputs.update(input_ids=torch.randint(0, scn.model.decoder.vocab_size, (b, s)), attention_mask=mask,
                  pixel_values=torch.empty(n * grid_h * grid_w, row, dtype=_dtype_of(visual)),
                  position_ids=torch.arange(s).view(1, 1, -1).expand(3, b, -1))
    vision_kwargs = qwen_vl_vision_kwargs(visual, model.vramplan_segments, n, grid_h, grid_w)
    inputs.update({f"vision_{k}": v for k, v in vision_kwargs.items()})

    def forward_qwen_vl() -> torch.Tensor:
        out = visual(inputs["pixel_values"], grid_thw=None, **vision_kwargs)
        encoded = BaseModelOutputWithPooling(last_hidden_state=out.last_hidden_state,
                                             pooler_output=(out.pooler_output,))
        del out
        return model(input_ids=inputs["input_ids"], labels=inputs["labels"], attention_mask=inputs["attention_mask"],
                     position_ids=inputs["position_ids"], mm_encoder_outputs={"image": encoded}, use_cache=False).loss

    return inputs, forward_qwen_vl


def _gemma3_inputs(scn: Scenario, model: nn.Module, inputs: dict[str, Any],
                   mask: torch.Tensor | None) -> tuple[dict[str, Any], Callable[[], torch.Tensor]]:
    """Gemma 3 (``modeling_gemma3.py`` Gemma3ForConditionalGeneration): ``mm_tokens_per_image`` placeholder ids per
    image inside ``seq_len``, pixel values at ``vision_config.image_size``, and with SDPA/eager attention the
    processor's ``token_type_ids`` (1 on image tokens), from which the model builds its 4-D mask with the
    bidirectional image blocks (Gemma 3 has no FlashAttention-2 path; with ``flash`` the trace keeps the causal
    text-only mask, as the estimate does)."""
    b, s = scn.train.micro_batch, scn.train.seq_len
    vis = model.config.vision_config
    n = b * scn.train.images_per_sample
    inputs.update(input_ids=torch.randint(0, scn.model.decoder.vocab_size, (b, s)), attention_mask=mask,
                  pixel_values=torch.empty(n, vis.num_channels, vis.image_size, vis.image_size,
                                           dtype=_dtype_of(model.model.vision_tower)))
    if scn.train.attention is not Attention.FLASH:
        inputs["token_type_ids"] = torch.zeros(b, s, dtype=torch.long)

    def forward_gemma3() -> torch.Tensor:
        return model(**inputs, use_cache=False).loss

    return inputs, forward_gemma3


def _llava_next_inputs(scn: Scenario, model: nn.Module, inputs: dict[str, Any],
                       mask: torch.Tensor | None) -> tuple[dict[str, Any], Callable[[], torch.Tensor]]:
    """LLaVA-NeXT (``modeling_llava_next.py``): ``image_tokens`` placeholder ids per image inside ``seq_len``,
    pixel values of the base view + grid tiles per image ((images, passes, C, tile, tile), as the processor stacks
    them), and ``image_sizes`` as a list of (height, width) Python ints: the model reads them with ``tolist()``
    (tile counts, unpadding), which a fake tensor cannot answer."""
    b, s = scn.train.micro_batch, scn.train.seq_len
    tower = scn.model.tower("vision")
    assert tower is not None
    vis = model.config.vision_config
    n = b * scn.train.images_per_sample
    height, width = _llava_next_image(scn, model)
    inputs.update(input_ids=torch.randint(0, scn.model.decoder.vocab_size, (b, s)), attention_mask=mask,
                  pixel_values=torch.empty(n, tower.passes_per_image, vis.num_channels, vis.image_size, vis.image_size,
                                           dtype=_dtype_of(model.model.vision_tower)),
                  image_sizes=[[height, width]] * n)

    def forward_llava_next() -> torch.Tensor:
        return model(**inputs, use_cache=False).loss

    return inputs, forward_llava_next


def _llava_next_image(scn: Scenario, model: nn.Module) -> tuple[int, int]:
    """(height, width) of the images: the config's ``vramplan_image_size`` or the scenario's ``train.image_size``
    (both [w, h]; a single int is a square), else the largest pinpoint (as ``hf_vlm.build_llava_next``)."""
    size = getattr(model, "vramplan_image_size", None) or scn.train.image_size
    if isinstance(size, int):
        size = (size, size)
    if size:
        return int(size[1]), int(size[0])
    pinpoints = [(int(h), int(w)) for h, w in model.config.image_grid_pinpoints]
    return max(pinpoints, key=lambda hw: (hw[0] * hw[1], hw))
