"""Vision towers and connectors: tower config dicts -> ``VisionTowerSpec``, projector shapes -> ``ConnectorSpec``.

Owns exact parameter counts of the image encoders as a VLM holds them (CLIPVisionModel, SiglipVisionModel,
the OpenCLIP/timm ConvNeXt trunk MGM keeps, Qwen2-VL's vision transformer without its merger) and of the
trainable connectors (LLaVA ``mm_projector``/``multi_modal_projector``, MGM's ``vlm_uni`` heads, Qwen2-VL's
``merger``). Imports only ``vramplan.core`` and ``._config``; never torch or transformers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..core.errors import SpecError
from ..core.model import ConnectorSpec, Linear, VisionTowerSpec
from ._config import Cfg

CLIP_VISION_DEFAULTS: dict[str, object] = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
    "num_channels": 3, "image_size": 224, "patch_size": 32,
}
"""``CLIPVisionConfig`` defaults (llava-hf saves ``vision_config`` as a diff against them)."""

SIGLIP_VISION_DEFAULTS: dict[str, object] = {**CLIP_VISION_DEFAULTS, "patch_size": 16, "vision_use_head": True}
"""``SiglipVisionConfig`` defaults."""

TOWER_TYPES = ("clip_vision_model", "clip", "siglip_vision_model", "siglip", "convnext")
"""``model_type`` values ``tower_from_config`` accepts."""


def _layernorm(dim: int) -> int:
    """``nn.LayerNorm(dim)``: weight and bias."""
    return 2 * dim


def _vit_layers(h: int, inter: int, layers: int) -> int:
    """``CLIPEncoderLayer`` / ``SiglipEncoderLayer``: q/k/v/out_proj with bias, two LayerNorms, fc1/fc2 with bias."""
    per_layer = 4 * (h * h + h) + 2 * _layernorm(h) + (h * inter + inter) + (inter * h + h)
    return layers * per_layer


def clip_vision_numel(h: int, inter: int, layers: int, channels: int, image: int, patch: int) -> int:
    """``models/clip/modeling_clip.py`` CLIPVisionModel: class_embedding (h), patch Conv2d without bias,
    position_embedding (patches + 1), pre_layrnorm, encoder, post_layernorm."""
    patches = (image // patch) ** 2
    embeddings = h + channels * patch * patch * h + (patches + 1) * h
    return embeddings + _layernorm(h) + _vit_layers(h, inter, layers) + _layernorm(h)


def siglip_vision_numel(h: int, inter: int, layers: int, channels: int, image: int, patch: int, head: bool) -> int:
    """``models/siglip/modeling_siglip.py`` SiglipVisionModel: patch Conv2d with bias, position_embedding
    (patches, no class token), encoder, post_layernorm and, with ``vision_use_head``, the attention-pooling
    head (probe, nn.MultiheadAttention in_proj 3h x h + bias and out_proj, LayerNorm, MLP)."""
    patches = (image // patch) ** 2
    n = channels * patch * patch * h + h + patches * h + _vit_layers(h, inter, layers) + _layernorm(h)
    if head:
        n += h + (3 * h * h + 3 * h) + (h * h + h) + _layernorm(h) + (h * inter + inter) + (inter * h + h)
    return n


def convnext_numel(dims: tuple[int, ...], depths: tuple[int, ...], channels: int, patch: int, layer_scale: bool) -> int:
    """ConvNeXt trunk (stem + stages, no head), as ``models/convnext/modeling_convnext.py`` ConvNextModel
    without its final ``layernorm`` and as timm/OpenCLIP ``trunk.stem`` + ``trunk.stages`` that MGM keeps:
    stem Conv2d(k=patch, bias) + LayerNorm; stages 1.. start with LayerNorm + Conv2d(k2, s2, bias); each
    block is a depthwise 7x7 Conv2d with bias, LayerNorm, Linear(d, 4d), Linear(4d, d) and layer scale (d)."""
    n = channels * patch * patch * dims[0] + dims[0] + _layernorm(dims[0])
    for s, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
        if s > 0:
            prev = dims[s - 1]
            n += _layernorm(prev) + prev * 4 * dim + dim
        block = dim * 49 + dim + _layernorm(dim) + (dim * 4 * dim + 4 * dim) + (4 * dim * dim + dim)
        block += dim if layer_scale else 0
        n += depth * block
    return n


def qwen2_vl_vision_numel(embed: int, depth: int, mlp_hidden: int, channels: int, patch: int, temporal: int) -> int:
    """``models/qwen2_vl/modeling_qwen2_vl.py`` Qwen2VisionTransformerPretrainedModel WITHOUT ``merger``:
    PatchEmbed Conv3d(k=(temporal, patch, patch)) without bias, and per block two LayerNorms, qkv
    Linear(e, 3e, bias), proj Linear(e, e, bias), fc1/fc2 with bias. The merger is a ``ConnectorSpec``."""
    per_block = 2 * _layernorm(embed) + (embed * 3 * embed + 3 * embed) + (embed * embed + embed)
    per_block += (embed * mlp_hidden + mlp_hidden) + (mlp_hidden * embed + embed)
    return channels * temporal * patch * patch * embed + depth * per_block


def _square(c: Cfg, key: str) -> int:
    value = c.req(key)
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise SpecError(f"{c.path}.{key}={value!r}: only square sizes are supported")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{c.path}.{key}={value!r} must be a positive integer")
    return value


def _vit_tower(c: Cfg, name: str, kind: str, image_size: int | None) -> VisionTowerSpec:
    h, inter = c.integer("hidden_size"), c.integer("intermediate_size")
    layers, heads = c.integer("num_hidden_layers"), c.integer("num_attention_heads")
    channels = c.integer("num_channels")
    image, patch = image_size or _square(c, "image_size"), _square(c, "patch_size")
    if kind == "clip":
        n = clip_vision_numel(h, inter, layers, channels, image, patch)
    else:
        n = siglip_vision_numel(h, inter, layers, channels, image, patch, c.flag("vision_use_head", True))
    return VisionTowerSpec(name=name, kind="vit", image_size=image, patch_size=patch, num_params=n, hidden_size=h,
                           num_layers=layers, num_heads=heads, intermediate_size=inter, class_token=kind == "clip",
                           positions_per_pass=(image // patch) ** 2, out_channels=h)


def tower_from_config(config: Mapping[str, Any], name: str = "vision", *, path: str = "vision_config",
                      image_size: int | None = None) -> VisionTowerSpec:
    """A ``VisionTowerSpec`` from a tower config (CLIP, SigLIP, ConvNeXt; a full CLIP/SigLIP config is
    reduced to its ``vision_config``). ``image_size`` overrides the config (MGM feeds ConvNeXt 768 px).
    ``positions_per_pass`` is the patch grid (class token dropped, LLaVA ``select_feature='patch'``)."""
    c = Cfg(config, path)
    model_type = c.text("model_type", "")
    if model_type in ("clip", "siglip"):
        vision = dict(Cfg(c.req("vision_config"), f"{path}.vision_config").data)
        vision.setdefault("model_type", f"{model_type}_vision_model")
        return tower_from_config(vision, name, path=f"{path}.vision_config", image_size=image_size)
    if model_type == "clip_vision_model":
        return _vit_tower(Cfg(config, path, CLIP_VISION_DEFAULTS), name, "clip", image_size)
    if model_type == "siglip_vision_model":
        return _vit_tower(Cfg(config, path, SIGLIP_VISION_DEFAULTS), name, "siglip", image_size)
    if model_type == "convnext":
        dims = tuple(int(d) for d in c.req("hidden_sizes"))
        depths = tuple(int(d) for d in c.req("depths"))
        if len(dims) != len(depths) or not dims:
            raise SpecError(f"{path}: hidden_sizes {dims} and depths {depths} must have the same length")
        patch = c.integer("patch_size", default=4)
        image = image_size or c.integer("image_size", default=224)
        scale = float(c.raw("layer_scale_init_value", 1e-6)) > 0
        n = convnext_numel(dims, depths, c.integer("num_channels", default=3), patch, scale)
        return VisionTowerSpec(name=name, kind="convnext", image_size=image, patch_size=patch, num_params=n,
                               num_layers=sum(depths), stage_dims=dims, stage_depths=depths,
                               positions_per_pass=(image // patch) ** 2, out_channels=sum(dims))
    raise SpecError(f"{path}.model_type={model_type!r} is not a supported vision tower; "
                    f"supported: {', '.join(TOWER_TYPES)}")


QWEN2_VL_MAX_PIXELS = 1280 * 28 * 28
"""Pixels per image we assume for Qwen2-VL: the ``max_pixels`` its model card recommends for limiting
memory (1280 visual tokens). A 1120 x 896 image has exactly this many: 80 x 64 = 5120 patches of 14 px,
merged 2 x 2 into 1280 LLM tokens. The processor's own default (max_pixels 12845056) allows 16384 tokens."""

QWEN_VL_DEFAULT_IMAGE = (1120, 896)
"""(width, height) of the image a Qwen-VL estimate assumes unless told: ``QWEN2_VL_MAX_PIXELS`` exactly."""


QWEN_VL_PROCESSOR_MAX_PIXELS = 12_845_056
"""``Qwen2VLImageProcessor`` default ``max_pixels`` (16384 tokens of 28 x 28 px)."""


def qwen_vl_smart_resize(width: int, height: int, factor: int = 28, min_pixels: int = 56 * 56,
                         max_pixels: int = 14 * 14 * 4 * 1280) -> tuple[int, int]:
    """(width, height) the Qwen2-VL/2.5-VL image processor feeds the tower
    (``models/qwen2_vl/image_processing_qwen2_vl.py`` ``smart_resize``): both sides rounded to a multiple of
    ``factor`` (patch x merge), scaled down to at most ``max_pixels`` or up to at least ``min_pixels`` keeping
    the aspect ratio. ``max_pixels`` defaults to the 1280-token cap of the model cards (the processor's
    own default, 12845056, is 16384 tokens)."""
    import math

    if max(height, width) / min(height, width) > 200:
        raise SpecError(f"image {width}x{height}: the Qwen-VL processor rejects aspect ratios above 200")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return w_bar, h_bar


def qwen2_5_vl_vision_numel(embed: int, depth: int, inter: int, channels: int, patch: int, temporal: int) -> int:
    """``models/qwen2_5_vl/modeling_qwen2_5_vl.py`` Qwen2_5_VisionTransformerPretrainedModel WITHOUT ``merger``:
    Conv3d patch embed without bias; per block two RMSNorms (weight only), qkv Linear(e, 3e, bias), proj
    Linear(e, e, bias), gate/up Linear(e, i, bias) and down Linear(i, e, bias) (``Qwen2_5_VLMLP(bias=True)``)."""
    per_block = 2 * embed + (embed * 3 * embed + 3 * embed) + (embed * embed + embed)
    per_block += 2 * (embed * inter + inter) + (inter * embed + embed)
    return channels * temporal * patch * patch * embed + depth * per_block


def qwen2_vl_tower(v: Cfg, image: tuple[int, int] | None = None,
                   version: str = "qwen2_vl") -> tuple[VisionTowerSpec, ConnectorSpec, int]:
    """Qwen2-VL / Qwen2.5-VL ``vision_config`` -> (tower without merger, merger connector, LLM tokens per
    image) for one ``image`` = (width, height) after ``qwen_vl_smart_resize`` (default
    ``QWEN_VL_DEFAULT_IMAGE``). ``PatchMerger``: ln_q (LayerNorm(e); Qwen2.5-VL RMSNorm(e)), mlp
    Linear(e*m^2, e*m^2) + GELU + Linear(e*m^2, hidden), biases. Qwen2-VL's ``vision_config.hidden_size`` is
    the LLM width (merger output) and ``embed_dim`` the tower width; Qwen2.5-VL's ``hidden_size`` is the
    tower width and ``out_hidden_size`` the LLM width."""
    qwen25 = version == "qwen2_5_vl"
    if qwen25:
        embed, out = v.integer("hidden_size"), v.integer("out_hidden_size")
        inter = v.integer("intermediate_size")
    else:
        embed, out = v.integer("embed_dim"), v.integer("hidden_size")
        inter = int(embed * v.raw("mlp_ratio", 4))
    depth, heads = v.integer("depth"), v.integer("num_heads")
    patch, temporal = v.integer("patch_size", "spatial_patch_size"), v.integer("temporal_patch_size", default=2)
    merge, channels = v.integer("spatial_merge_size", default=2), v.integer("in_channels", "in_chans", default=3)
    side = patch * merge
    # an explicit size is taken as what the processor passes on (its own max_pixels default, 12845056, applies);
    # the default image sits at the model cards' 1280-token cap
    width, height = (qwen_vl_smart_resize(*image, factor=side, max_pixels=QWEN_VL_PROCESSOR_MAX_PIXELS) if image
                     else qwen_vl_smart_resize(*QWEN_VL_DEFAULT_IMAGE, factor=side))
    patches = (width // patch) * (height // patch)
    if qwen25:
        n = qwen2_5_vl_vision_numel(embed, depth, inter, channels, patch, temporal)
        window = v.integer("window_size", default=112) // patch
        window_patches, full = window * window, len(v.raw("fullatt_block_indexes", [7, 15, 23, 31]) or [])
    else:
        n, window_patches, full = qwen2_vl_vision_numel(embed, depth, inter, channels, patch, temporal), 0, 0
    tower = VisionTowerSpec(
        name="vision", kind="vit", image_size=width, patch_size=patch, num_params=n, hidden_size=embed,
        num_layers=depth, num_heads=heads, intermediate_size=inter, num_patches=patches,
        positions_per_pass=patches, out_channels=embed, attention="packed", block=version,
        window_patches=window_patches, full_attention_layers=full)
    wide = embed * merge * merge
    merger = ConnectorSpec(name="merger", kind="merger", norm_numel=embed if qwen25 else _layernorm(embed),
                           norm="rmsnorm" if qwen25 else "layernorm", group=merge * merge, linears=(
                               Linear(name="mlp.0", d_in=wide, d_out=wide, bias=True),
                               Linear(name="mlp.2", d_in=wide, d_out=out, bias=True)))
    return tower, merger, patches // (merge * merge)


def gemma3_projector(tower: VisionTowerSpec, tokens: int, hidden: int) -> ConnectorSpec:
    """``models/gemma3/modeling_gemma3.py`` Gemma3MultiModalProjector: ``avg_pool`` (AvgPool2d, kernel =
    patches per side // sqrt(``mm_tokens_per_image``), no parameters), ``mm_soft_emb_norm`` (Gemma3RMSNorm of the
    vision width: one weight vector) and ``mm_input_projection_weight`` (vision width x text width, a bare
    parameter used by ``torch.matmul``, no bias). ``group`` = tower positions averaged into one token."""
    side = tower.image_size // tower.patch_size
    per_side = int(tokens ** 0.5)
    if per_side * per_side != tokens or per_side <= 0:
        raise SpecError(f"config.mm_tokens_per_image={tokens} must be a square number")
    kernel = side // per_side
    return ConnectorSpec(name="multi_modal_projector", kind="gemma3_pool", norm_numel=tower.hidden_size,
                         norm="rmsnorm", group=max(kernel, 1) ** 2,
                         linears=(Linear(name="mm_input_projection", d_in=tower.hidden_size, d_out=hidden),))


def select_best_resolution(size: tuple[int, int], pinpoints: list[tuple[int, int]]) -> tuple[int, int]:
    """``image_processing_utils.select_best_resolution``: the (height, width) pinpoint that keeps most of the
    (height, width) image after an aspect-preserving resize, the least padding on ties."""
    height, width = size
    best, best_effective, best_wasted = pinpoints[0], 0, float("inf")
    for ph, pw in pinpoints:
        scale = min(pw / width, ph / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = ph * pw - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (ph, pw), effective, wasted
    return best


def llava_next_tokens(size: tuple[int, int], pinpoints: list[tuple[int, int]], tile: int, patch: int,
                      base_positions: int) -> tuple[int, int]:
    """(tower passes, LLM tokens) of one (height, width) image in LLaVA-NeXT
    (``models/llava_next/modeling_llava_next.py``): ``image_size_to_num_patches`` = the tiles of the best
    pinpoint + the base view; ``pack_image_features``: the tiles' feature grid (grid_h*side x grid_w*side,
    side = tile // patch) cut back by ``unpad_image`` to the image's aspect ratio, one ``image_newline`` per
    remaining row, after the base view's ``base_positions`` features."""
    best_h, best_w = select_best_resolution(size, pinpoints)
    grid_h, grid_w = -(-best_h // tile), -(-best_w // tile)
    side = tile // patch
    rows, cols = grid_h * side, grid_w * side
    height, width = size
    if width / height > cols / rows:
        new_rows = int(round(height * (cols / width), 7))
        rows -= 2 * ((rows - new_rows) // 2)
    else:
        new_cols = int(round(width * (rows / height), 7))
        cols -= 2 * ((cols - new_cols) // 2)
    return 1 + grid_h * grid_w, base_positions + rows * cols + rows


_MLP_GELU = re.compile(r"^mlp(\d+)x_gelu$")


def llava_projector(kind: str, d_in: int, hidden: int, name: str = "mm_projector") -> ConnectorSpec:
    """LLaVA/MGM ``build_vision_projector`` (``llava/model/multimodal_projector/builder.py``): ``linear`` is
    Linear(d_in, hidden); ``mlp<N>x_gelu`` is Linear(d_in, hidden) then N-1 x (GELU, Linear(hidden, hidden)),
    all with bias. Module names are the ``nn.Sequential`` indices (0, 2, 4 ...)."""
    match = _MLP_GELU.match(kind)
    if kind == "linear":
        depth = 1
    elif match:
        depth = int(match.group(1))
    else:
        raise SpecError(f"mm_projector_type={kind!r} is not supported; use 'linear' or 'mlp2x_gelu' (mlp<N>x_gelu)")
    linears = [Linear(name=f"{name}.0", d_in=d_in, d_out=hidden, bias=True)]
    linears += [Linear(name=f"{name}.{2 * i}", d_in=hidden, d_out=hidden, bias=True) for i in range(1, depth)]
    return ConnectorSpec(name=name, kind="mlp", linears=tuple(linears))


def mgm_mining(mm_hidden: int, aux_hidden: int) -> ConnectorSpec:
    """MGM patch-info mining (``mgm/model/mgm_arch.py`` ``initialize_uni_modules``): three
    ``nn.Sequential(LayerNorm, Linear)`` heads, query LN(c)+Linear(c, c), aux and val LN(a)+Linear(a, c)."""
    return ConnectorSpec(
        name="vlm_uni", kind="mgm_mining",
        norm_numel=_layernorm(mm_hidden) + 2 * _layernorm(aux_hidden),
        linears=(Linear(name="vlm_uni_query_projector.1", d_in=mm_hidden, d_out=mm_hidden, bias=True),
                 Linear(name="vlm_uni_aux_projector.1", d_in=aux_hidden, d_out=mm_hidden, bias=True),
                 Linear(name="vlm_uni_val_projector.1", d_in=aux_hidden, d_out=mm_hidden, bias=True)),
    )
