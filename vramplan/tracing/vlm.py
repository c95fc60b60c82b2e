"""Composed vision-language models for the trace: MGM (Mini-Gemini) and the original LLaVA, from their parts.

MGM and the original LLaVA (``LlavaLlamaForCausalLM``) are not transformers classes, so they are composed
here from transformers parts, mirroring the repositories' code (docs/mgm.md §1; MGM HEAD 769820c):

- ``mgm/model/multimodal_encoder/clip_encoder.py``: ``CLIPVisionModel(images, output_hidden_states=True)``,
  feature = ``hidden_states[mm_vision_select_layer]`` without the CLS token, run under ``torch.no_grad()``
  when the tower is frozen;
- ``openclip_encoder.py``: the ConvNeXt trunk (stem + stages; transformers ``ConvNextModel`` embeddings and
  stages have the same modules and parameter count), under ``no_grad`` when frozen; stages 1..3 upsampled
  in fp32 to the stage-0 grid (``F.interpolate(.float(), bilinear)``), cast back, concatenated;
- ``mgm_arch.py`` ``encode_images`` (HD: ``image_grid`` x ``image_grid`` crops plus a global view, the aux map
  split per crop and a 1/grid copy for the global view) and ``unified_resampler`` (patch-info mining: the
  three ``vlm_uni_*`` LayerNorm+Linear heads, per-token attention over its aux patch), then
  ``mm_projector``;
- ``prepare_inputs_labels_for_multimodal``: text embeddings and image features concatenated into the LLM
  input (here one batched ``cat``; the repo loops per sample and stacks, the same bytes).

The CLIP tower runs eager attention as in the repositories' pinned transformers (4.36-4.39). Imports torch
and transformers only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class CLIPTower(nn.Module):
    """MGM/LLaVA ``CLIPVisionTower``: penultimate hidden state, patch positions only."""

    def __init__(self, config: Any, select_layer: int, with_cls: bool) -> None:
        super().__init__()
        from transformers import CLIPVisionModel

        self.vision_tower = CLIPVisionModel(config)
        self.select_layer = select_layer
        self.with_cls = with_cls

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        trains = any(p.requires_grad for p in self.parameters())
        with torch.set_grad_enabled(trains and torch.is_grad_enabled()):
            out = self.vision_tower(images, output_hidden_states=True)
            feats = out.hidden_states[self.select_layer]
            if not self.with_cls:
                feats = feats[:, 1:]
            return feats.to(images.dtype)


class _Values(list):  # type: ignore[type-arg]
    """A list that answers ``split`` and ``tolist`` like the 1-D tensor it stands for."""

    def split(self, sizes: list[int]) -> list[_Values]:  # type: ignore[override]
        out, start = [], 0
        for n in sizes:
            out.append(_Values(self[start:start + n]))
            start += n
        return out

    def tolist(self) -> list[float]:
        return list(self)


def _python_linspace(start: float, end: float, steps: int, **_kw: Any) -> _Values:
    """``torch.linspace`` as plain numbers (a fake tensor cannot answer ``.tolist()``)."""
    if steps == 1:
        return _Values([float(start)])
    return _Values([start + (end - start) * k / (steps - 1) for k in range(steps)])


class ConvNeXtAuxTower(nn.Module):
    """MGM ``OpenCLIPVisionTower``: stem + stages, every stage upsampled to stride 4 in fp32 and concatenated."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        from transformers import ConvNextModel

        linspace = torch.linspace
        torch.linspace = _python_linspace  # type: ignore[assignment]
        try:  # ConvNextEncoder computes its drop-path rates with linspace(...).split(...).tolist()
            trunk = ConvNextModel(config)
        finally:
            torch.linspace = linspace  # type: ignore[assignment]
        self.vision_stem = trunk.embeddings
        self.vision_stages = trunk.encoder.stages

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        trains = any(p.requires_grad for p in self.parameters())
        with torch.set_grad_enabled(trains and torch.is_grad_enabled()):
            results = []
            x = self.vision_stem(images)
            for stage in self.vision_stages:
                x = stage(x)
                results.append(x)
        size = results[0].shape[-2:]
        cat = [results[0].contiguous()]
        for r in results[1:]:
            cat.append(F.interpolate(r.float().contiguous(), size=size, mode="bilinear", align_corners=False).to(r.dtype))
        return torch.cat(cat, dim=1).contiguous()


def _head(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d_out))


class PatchInfoMining(nn.Module):
    """MGM ``vlm_uni_{query,aux,val}_projector`` and ``unified_resampler``."""

    def __init__(self, mm_hidden: int, aux_hidden: int) -> None:
        super().__init__()
        self.vlm_uni_query_projector = _head(mm_hidden, mm_hidden)
        self.vlm_uni_aux_projector = _head(aux_hidden, mm_hidden)
        self.vlm_uni_val_projector = _head(aux_hidden, mm_hidden)

    def forward(self, images: torch.Tensor, images_aux: torch.Tensor) -> torch.Tensor:
        patch_num = int(images.shape[1] ** 0.5)
        patch_size = images_aux.shape[-1] // patch_num
        aux = images_aux.permute(0, 2, 3, 1)
        aux = aux.reshape(len(aux), patch_num, patch_size, patch_num, patch_size, aux.shape[-1])
        aux = aux.permute(0, 1, 3, 2, 4, 5)
        aux = aux.reshape(len(aux), patch_num ** 2, patch_size ** 2, aux.shape[-1]).contiguous()
        embed_query = self.vlm_uni_query_projector(images)
        embed_aux = self.vlm_uni_aux_projector(aux)
        embed_value = self.vlm_uni_val_projector(aux)
        embed_att = embed_query[:, :, None] @ (embed_aux.transpose(-1, -2) / (embed_aux.shape[-1] ** 0.5))
        embed_att = embed_att.nan_to_num()
        return (embed_att.softmax(-1) @ embed_value).mean(2)


def mlp_projector(kind: str, d_in: int, hidden: int) -> nn.Module:
    """LLaVA ``build_vision_projector``: ``linear`` or ``mlp<N>x_gelu``."""
    if kind == "linear":
        return nn.Linear(d_in, hidden)
    depth = int(kind[len("mlp"):kind.index("x_gelu")])
    layers: list[nn.Module] = [nn.Linear(d_in, hidden)]
    for _ in range(1, depth):
        layers += [nn.GELU(), nn.Linear(hidden, hidden)]
    return nn.Sequential(*layers)


class ComposedVLM(nn.Module):
    """LLM + CLIP tower (+ ConvNeXt aux tower and patch-info mining for MGM) + projector."""

    def __init__(self, llm: nn.Module, clip: CLIPTower, projector: nn.Module, *, aux: ConvNeXtAuxTower | None = None,
                 mining: PatchInfoMining | None = None, image_grid: int = 1, image_global: bool = False) -> None:
        super().__init__()
        self.llm = llm
        self.vision_tower = clip
        self.vision_tower_aux = aux
        self.mining = mining
        self.mm_projector = projector
        self.image_grid = image_grid
        self.image_global = image_global and image_grid > 1

    def encode_images(self, images: torch.Tensor, images_aux: torch.Tensor | None) -> torch.Tensor:
        """``mgm_arch.encode_images`` (LLaVA: tower then projector)."""
        grid, use_global = self.image_grid, self.image_global
        batch = images.shape[0]
        n_grid = n_global = 0
        if grid > 1:
            if use_global:
                global_images = images[:, -1:].flatten(0, 1).contiguous()
                grid_images = images[:, :-1].flatten(0, 1).contiguous()
                n_grid, n_global = len(grid_images), len(global_images)
                images = torch.cat([grid_images, global_images], dim=0)
            else:
                images = images.flatten(0, 1).contiguous()
        feats = self.vision_tower(images)
        if use_global:
            feat_global = feats[-n_global:]
            feats = feats[:n_grid]
        if images_aux is not None and self.vision_tower_aux is not None and self.mining is not None:
            aux_raw = self.vision_tower_aux(images_aux).to(dtype=feats.dtype)
            if use_global:
                aux_global = F.interpolate(aux_raw.float(), scale_factor=1 / grid, mode="bilinear",
                                           align_corners=False).to(dtype=aux_raw.dtype)
                aux_feat_global = self.mining(feat_global, aux_global)
            if grid > 1:
                aux_raw = aux_raw.reshape(*aux_raw.shape[:2], grid, aux_raw.shape[-2] // grid, grid,
                                          aux_raw.shape[-1] // grid)
                aux_raw = aux_raw.permute(0, 2, 4, 1, 3, 5).flatten(1, 2).flatten(0, 1).contiguous()
            aux_feats = self.mining(feats, aux_raw)
            if grid > 1:
                feats = feats.reshape(batch, grid ** 2, *feats.shape[1:]).flatten(1, 2).contiguous()
                aux_feats = aux_feats.reshape(batch, grid ** 2, *aux_feats.shape[1:]).flatten(1, 2).contiguous()
            if use_global:
                feats = torch.cat([feat_global, feats], dim=1)
                aux_feats = torch.cat([aux_feat_global, aux_feats], dim=1)
            feats = feats + aux_feats
        return self.mm_projector(feats)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                images_aux: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None) -> Any:
        """Encode images, splice their features before the text embeddings, run the LLM with its loss."""
        feats = self.encode_images(images, images_aux)
        embed = self.llm.get_input_embeddings()(input_ids)
        batch = input_ids.shape[0]
        feats = feats.reshape(batch, -1, feats.shape[-1]).to(embed.dtype)
        inputs_embeds = torch.cat([feats, embed], dim=1)
        del feats, embed  # prepare_inputs_labels_for_multimodal returns before the LLM runs
        return self.llm(inputs_embeds=inputs_embeds, labels=labels, attention_mask=attention_mask, use_cache=False)


# ---- Qwen2-VL / Qwen2.5-VL: dynamic-resolution towers with packed (varlen) attention ------------------
def qwen_vl_window_lengths(grid_h: int, grid_w: int, merge: int, window_size: int, patch: int) -> list[int]:
    """Patches per attention window of one image, in order (``transformers.vision_utils.get_vision_window_index``:
    windows of ``window_size // merge // patch`` merge units per side, the grid padded at the bottom/right,
    empty windows dropped by ``unique_consecutive``)."""
    win = window_size // merge // patch
    rows, cols = grid_h // merge, grid_w // merge
    n_h, n_w = (rows + win - rows % win) // win, (cols + win - cols % win) // win
    out = []
    for i in range(n_h):
        for j in range(n_w):
            n = max(0, min(win, rows - i * win)) * max(0, min(win, cols - j * win))
            if n:
                out.append(n * merge * merge)
    return out


def qwen_vl_position_ids(images: int, grid_h: int, grid_w: int, merge: int) -> torch.Tensor:
    """``get_vision_position_ids`` for ``images`` images of one grid, from Python ints (block-major (h, w))."""
    h = torch.arange(grid_h).unsqueeze(1).expand(-1, grid_w)
    w = torch.arange(grid_w).unsqueeze(0).expand(grid_h, -1)
    shape = (grid_h // merge, merge, grid_w // merge, merge)
    h = h.reshape(shape).transpose(1, 2).flatten()
    w = w.reshape(shape).transpose(1, 2).flatten()
    return torch.stack([h, w], dim=-1).repeat(images, 1)


class VarlenSegments:
    """Segment lengths of the packed vision sequence, keyed by the ``cu_seqlens`` tensor that carries them.

    transformers' Qwen-VL towers read segment boundaries with ``cu_seqlens.tolist()`` (SDPA/eager) or hand
    ``cu_seqlens`` to FlashAttention-2's varlen kernel; a fake tensor has no values, so the trace passes
    precomputed ``cu_seqlens`` and registers an attention function (named ``..._flash_...`` so that the towers
    take the varlen branch) that splits q/k/v by these Python lengths and runs SDPA (or eager) per segment:
    the saved q, k, v, output and log-sum-exp of FA2's varlen kernel, without an (L x L) matrix."""

    def __init__(self) -> None:
        self.lengths: dict[int, list[int]] = {}

    def cu_seqlens(self, lengths: list[int]) -> torch.Tensor:
        starts = [0]
        for n in lengths:
            starts.append(starts[-1] + n)
        cu = torch.tensor(starts, dtype=torch.int32)
        self.lengths[id(cu)] = list(lengths)
        return cu

    def register(self, eager: bool) -> str:
        from transformers import AttentionInterface
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.models.llama.modeling_llama import eager_attention_forward

        inner = eager_attention_forward if eager else sdpa_attention_forward
        segments = self

        def attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
                      *, cu_seq_lens_q: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, None]:
            for k in ("cu_seq_lens_k", "max_length_q", "max_length_k"):
                kwargs.pop(k, None)
            lengths = segments.lengths[id(cu_seq_lens_q)]
            if len(set(lengths)) == 1:  # equal segments: one batched call on views
                n, seg = len(lengths), lengths[0]

                def per(t: torch.Tensor) -> torch.Tensor:
                    return t.unflatten(2, (n, seg)).transpose(1, 2).flatten(0, 1)

                out = inner(module, per(query), per(key), per(value), None, **kwargs)[0]
                return out.reshape(1, n * seg, *out.shape[2:]), None
            parts = zip(*(t.split(lengths, dim=2) for t in (query, key, value)), strict=True)
            outs = [inner(module, q, k, v, None, **kwargs)[0] for q, k, v in parts]
            return torch.cat(outs, dim=1), None

        name = "vramplan_flash_varlen_" + ("eager" if eager else "sdpa")
        AttentionInterface.register(name, attention)
        return name


def qwen_vl_vision_kwargs(model: nn.Module, segments: VarlenSegments, images: int, grid_h: int,
                          grid_w: int) -> dict[str, Any]:
    """Precomputed metadata kwargs of the Qwen-VL vision forward for ``images`` images of one grid
    (``position_ids``, ``cu_seqlens``/``max_seqlen`` and, for Qwen2.5-VL, the window index and windows)."""
    cfg = model.config
    merge = int(cfg.spatial_merge_size)
    per_image = grid_h * grid_w
    out: dict[str, Any] = {"position_ids": qwen_vl_position_ids(images, grid_h, grid_w, merge),
                           "cu_seqlens": segments.cu_seqlens([per_image] * images), "max_seqlen": per_image}
    if hasattr(cfg, "fullatt_block_indexes"):
        windows = qwen_vl_window_lengths(grid_h, grid_w, merge, int(cfg.window_size), int(cfg.patch_size)) * images
        # the permutation's values do not change a byte; its shape (one entry per merge unit) does
        out["window_index"] = torch.arange(images * per_image // (merge * merge))
        out["cu_window_seqlens"] = segments.cu_seqlens(windows)
        out["max_window_seqlen"] = max(windows)
    return out
