"""Vision-language families: LLaVA (llava-hf and the original LlavaLlamaForCausalLM), Qwen2-VL and MGM.

Owns how a VLM config is split into its decoder, its towers (with passes and positions per image) and
its connectors, and how many LLM tokens one image becomes. Tower configs that a config only names
(``mm_vision_tower``) are looked up through a resolver passed in by ``hf_config``.
Imports only ``vramplan.core`` and sibling adapter modules; never torch or transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..core.errors import ScenarioError, SpecError
from ..core.model import ConnectorSpec, VisionTowerSpec
from ._config import Cfg
from ._decoder_common import SUBCONFIG_DEFAULTS, DecoderBuild
from .hf_decoder import build_decoder
from .hf_vision import (
    gemma3_projector,
    llava_next_tokens,
    llava_projector,
    mgm_mining,
    qwen2_vl_tower,
    tower_from_config,
)

TowerResolver = Callable[[str], "Mapping[str, Any] | None"]
"""Maps a tower reference (``openai/clip-vit-large-patch14-336``) to its config dict, or None."""

VLM_TYPES = ("llava", "llava_llama", "llava_mistral", "llava_next", "qwen2_vl", "qwen2_5_vl", "gemma3", "mgm",
             "mgm_gemma", "mgm_mixtral")
"""VLM ``model_type`` values (MGM's pre-rename ``mini_gemini*`` names are accepted too)."""


class VLMParts:
    """What a VLM builder returns to ``hf_config.model_from_config``."""

    __slots__ = ("build", "connectors", "image_tokens", "notes", "towers")

    def __init__(self, build: DecoderBuild, towers: tuple[VisionTowerSpec, ...], connectors: tuple[ConnectorSpec, ...],
                 image_tokens: int, notes: tuple[str, ...] = ()) -> None:
        self.build, self.towers, self.connectors = build, towers, connectors
        self.image_tokens, self.notes = image_tokens, notes


def _resolve(c: Cfg, key: str, resolve: TowerResolver) -> Mapping[str, Any]:
    ref = str(c.req(key))
    found = resolve(ref)
    if found is None:
        raise SpecError(f"{c.path}.{key}={ref!r}: no tower config is known for it; add the tower's config.json "
                        "to vramplan/registry/towers/ (or pass resolve_tower=...)")
    return found


def _patch_positions(tower: VisionTowerSpec, select_feature: str, path: str) -> int:
    """Positions handed to the projector: the patch grid, plus the CLS token for ``cls_patch``/``full``."""
    grid = (tower.image_size // tower.patch_size) ** 2
    if select_feature in ("patch", "default"):
        return grid
    if select_feature in ("cls_patch", "full"):
        return grid + (1 if tower.class_token else 0)
    raise SpecError(f"{path}={select_feature!r} is not supported; use 'patch' or 'cls_patch'")


def build_llava_hf(c: Cfg) -> VLMParts:
    """llava-hf ``LlavaForConditionalGeneration`` (``models/llava/modeling_llava.py``): the whole
    vision model from ``vision_config`` (AutoModel: CLIPVisionModel), ``multi_modal_projector``
    linear_1 (vision hidden x feature layers -> H) and linear_2 (H -> H), bias ``multimodal_projector_bias``."""
    text_raw = c.req("text_config")
    text_type = str(text_raw.get("model_type") or "llama") if isinstance(text_raw, Mapping) else "llama"
    text = c.sub("text_config", SUBCONFIG_DEFAULTS.get(text_type))
    build = build_decoder(text, text_type)
    vision_raw = dict(c.raw("vision_config") or {"hidden_size": 1024, "intermediate_size": 4096, "patch_size": 14,
                                                    "image_size": 336, "num_hidden_layers": 24,
                                                    "num_attention_heads": 16})
    vision_raw.setdefault("model_type", "clip_vision_model")
    tower = tower_from_config(vision_raw, "vision", path="config.vision_config")
    strategy = c.text("vision_feature_select_strategy", "default")
    positions = _patch_positions(tower, strategy, "config.vision_feature_select_strategy")
    tower = replace(tower, positions_per_pass=positions)
    layers = c.raw("vision_feature_layer", -2)
    n_layers = len(layers) if isinstance(layers, list) else 1
    projector = llava_projector("mlp2x_gelu", tower.hidden_size * n_layers, build.decoder.hidden_size,
                                name="multi_modal_projector")
    bias = c.flag("multimodal_projector_bias", True)
    linears = tuple(replace(lin, name=f"linear_{i + 1}", bias=bias) for i, lin in enumerate(projector.linears))
    projector = replace(projector, linears=linears)
    if c.flag("tie_word_embeddings", False) and not build.decoder.tie_embeddings:
        build = replace(build, decoder=replace(build.decoder, tie_embeddings=True))
    tokens = c.integer("image_seq_length", default=positions)
    return VLMParts(build, (tower,), (projector,), tokens)


LLAVA_NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
"""``LlavaNextConfig.image_grid_pinpoints`` default ((height, width) in pixels)."""


def build_llava_next(c: Cfg, image: tuple[int, int] | None = None) -> VLMParts:
    """``models/llava_next/modeling_llava_next.py`` LlavaNextForConditionalGeneration (LLaVA-NeXT / v1.6): the
    llava-hf parts (CLIPVisionModel, ``multi_modal_projector`` linear_1/linear_2) plus ``image_newline`` (one
    LLM-width parameter). Anyres: each image runs the tower on a base view and on the tiles of its best
    ``image_grid_pinpoints`` resolution; the projector maps every tower position, then the tiles' features are
    unpadded to the image's aspect ratio and get one newline per row (``hf_vision.llava_next_tokens``).
    ``image`` = (width, height) of the images (default: the largest pinpoint, the most tokens)."""
    parts = build_llava_hf(c)
    tower, projector = parts.towers[0], parts.connectors[0]
    raw = c.raw("image_grid_pinpoints", LLAVA_NEXT_PINPOINTS)
    try:
        pinpoints = [(int(h), int(w)) for h, w in raw]
    except (TypeError, ValueError):
        raise SpecError(f"config.image_grid_pinpoints={raw!r} must be a list of [height, width] pairs") from None
    if not pinpoints:
        raise SpecError("config.image_grid_pinpoints is empty")
    if image is None:
        largest = max(pinpoints, key=lambda hw: (hw[0] * hw[1], hw))
        size, what = largest, f"the largest image_grid_pinpoint {largest[1]}x{largest[0]} (the most tokens)"
    else:
        size, what = (image[1], image[0]), f"{image[0]}x{image[1]} (train.image_size)"
    passes, tokens = llava_next_tokens(size, pinpoints, tower.image_size, tower.patch_size, tower.positions_per_pass)
    tower = replace(tower, passes_per_image=passes, attention="native")
    projector = replace(projector, kind="anyres_mlp", extra_numel=parts.build.decoder.hidden_size)
    note = (f"LLaVA-NeXT image: {what} = base view + {passes - 1} tiles of {tower.image_size} px = {passes} tower "
            f"passes, {tokens} LLM tokens per image after unpadding and newlines (set train.image_size [w, h])")
    return VLMParts(parts.build, (tower,), (projector,), tokens, (note,))


def build_llava_original(c: Cfg, model_type: str, resolve: TowerResolver) -> VLMParts:
    """Original LLaVA (``llava/model/language_model/llava_llama.py`` LlavaLlamaForCausalLM): a Llama config
    plus ``mm_vision_tower`` (CLIPVisionTower keeps the whole CLIPVisionModel), ``mm_hidden_size`` and
    ``mm_projector_type`` (default ``linear``)."""
    backbone = "mistral" if model_type == "llava_mistral" else "llama"
    build = build_decoder(c, backbone)
    tower = tower_from_config(_resolve(c, "mm_vision_tower", resolve), "vision", path="mm_vision_tower")
    positions = _patch_positions(tower, c.text("mm_vision_select_feature", "patch"), "config.mm_vision_select_feature")
    tower = replace(tower, positions_per_pass=positions)
    mm_hidden = c.integer("mm_hidden_size", default=tower.hidden_size)
    projector = llava_projector(c.text("mm_projector_type", "linear"), mm_hidden, build.decoder.hidden_size)
    notes: tuple[str, ...] = ()
    if c.text("image_aspect_ratio", "pad") == "anyres":
        notes = ("image_aspect_ratio=anyres: counted as one 336 px view per image (LLaVA-NeXT tiles are not modelled)",)
    return VLMParts(build, (tower,), (projector,), positions, notes)


def build_qwen2_vl(c: Cfg, model_type: str = "qwen2_vl", image: tuple[int, int] | None = None) -> VLMParts:
    """``models/qwen2_vl/modeling_qwen2_vl.py`` Qwen2VLForConditionalGeneration and
    ``models/qwen2_5_vl/modeling_qwen2_5_vl.py`` Qwen2_5_VLForConditionalGeneration: a Qwen2 decoder (q/k/v
    bias) from the top-level keys or ``text_config``, the vision transformer (tower) and its ``PatchMerger``
    (connector, so that it can train while the tower stays frozen). ``image`` = (width, height) of the
    images (default ``QWEN_VL_DEFAULT_IMAGE``; also ``vramplan_image_size`` in the config)."""
    text = c.sub("text_config") if c.has("text_config") else c
    build = build_decoder(text, "qwen2")
    tie = c.flag("tie_word_embeddings", build.decoder.tie_embeddings)
    layer_class = "Qwen2_5_VLDecoderLayer" if model_type == "qwen2_5_vl" else "Qwen2VLDecoderLayer"
    build = replace(build, decoder=replace(build.decoder, tie_embeddings=tie or build.decoder.tie_embeddings),
                    decoder_layer_class=layer_class)
    vision = c.sub("vision_config")
    width_key = "out_hidden_size" if model_type == "qwen2_5_vl" else "hidden_size"
    notes: tuple[str, ...] = ()
    if vision.has(width_key) and vision.integer(width_key) != build.decoder.hidden_size:
        # transformers builds it (the defaults of AutoConfig.for_model do: 3584 vs 8192) but cannot run it
        notes = (f"config.vision_config.{width_key}={vision.integer(width_key)} differs from the LLM hidden_size="
                 f"{build.decoder.hidden_size}: the merger is counted as configured, but such a model cannot merge "
                 "image features into the text (masked_scatter width mismatch)",)
    defaults: dict[str, object] = {width_key: build.decoder.hidden_size}
    if model_type == "qwen2_5_vl":  # Qwen2_5_VLVisionConfig defaults (a released config states them all)
        defaults.update(hidden_size=1280, intermediate_size=3420, depth=32, num_heads=16, patch_size=14,
                        window_size=112, fullatt_block_indexes=[7, 15, 23, 31])
    vision = Cfg(vision.data, vision.path, defaults)
    tower, merger, tokens = qwen2_vl_tower(vision, image or image_size_of(c), model_type)
    name = "Qwen2.5-VL" if model_type == "qwen2_5_vl" else "Qwen2-VL"
    height = tower.num_patches // (tower.image_size // tower.patch_size) * tower.patch_size
    note = (f"{name} image: {tower.image_size}x{height} px after the processor's smart_resize = "
            f"{tower.num_patches} patches / {tokens} LLM tokens per image (set train.image_size [w, h]; the "
            "default 1120x896 is max_pixels=1280*28*28 of the model card, the processor default 12845056 px "
            "allows up to 16384 tokens); the merger is counted as a connector, not in the tower")
    return VLMParts(build, (tower,), (merger,), tokens, (note, *notes))


GEMMA3_TEXT_DEFAULTS: dict[str, object] = {
    "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256,
    "sliding_window": 4096, "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6,
    "max_position_embeddings": 131072,
}
"""``Gemma3TextConfig`` defaults (released Gemma 3 configs state only the keys that differ)."""

GEMMA3_VISION_DEFAULTS: dict[str, object] = {"model_type": "siglip_vision_model"}
"""``Gemma3Config.vision_config`` default: a plain ``SiglipVisionConfig`` (224 px / 16, with its head)."""


def build_gemma3(c: Cfg) -> VLMParts:
    """``models/gemma3/modeling_gemma3.py`` Gemma3ForConditionalGeneration: ``vision_tower`` =
    ``AutoModel.from_config(vision_config)`` (SiglipVisionModel, its pooling head only with
    ``vision_use_head``), ``multi_modal_projector`` (Gemma3MultiModalProjector: AvgPool2d over the patch grid to
    ``mm_tokens_per_image`` tokens, ``mm_soft_emb_norm`` Gemma3RMSNorm(vision hidden), ``mm_input_projection_weight``
    (vision hidden x text hidden, no bias)), the Gemma3TextModel and ``lm_head`` (tied by default). Every image
    is resized to ``vision_config.image_size`` (no pan & scan in training collators by default)."""
    text = c.sub("text_config", GEMMA3_TEXT_DEFAULTS) if c.has("text_config") else Cfg({}, "config.text_config",
                                                                                       GEMMA3_TEXT_DEFAULTS)
    build = build_decoder(text, "gemma3_text")
    tie = c.flag("tie_word_embeddings", True)
    build = replace(build, decoder=replace(build.decoder, tie_embeddings=tie), decoder_layer_class="Gemma3DecoderLayer")
    vision_raw = {**GEMMA3_VISION_DEFAULTS, **dict(c.raw("vision_config") or {})}
    tower = tower_from_config(vision_raw, "vision", path="config.vision_config")
    # transformers' SigLIP runs the model's attention implementation (no class token, one image per pass)
    tower = replace(tower, attention="native")
    tokens = c.integer("mm_tokens_per_image", default=256)
    projector = gemma3_projector(tower, tokens, build.decoder.hidden_size)
    flash = ("Gemma 3 does not support FlashAttention-2 in transformers (the image tokens attend to each other "
             "bidirectionally through a 4-D mask built from token_type_ids): use attention sdpa or eager; with "
             "attention=flash the estimate is that of a causal text-only mask")
    image = (f"Gemma 3 image: resized to {tower.image_size} px = {tower.positions_per_pass} patches, average-pooled "
             f"to {tokens} LLM tokens per image (pan & scan crops are not counted)")
    notes = (flash, image)
    return VLMParts(build, (tower,), (projector,), tokens, notes)


DYNAMIC_RESOLUTION_TYPES = ("qwen2_vl", "qwen2_5_vl", "llava_next")
"""VLM ``model_type`` values whose tokens per image follow the image size (the others resize to a fixed size)."""


def with_image_size(config: dict[str, Any], image_size: tuple[int, int] | None) -> dict[str, Any]:
    """``config`` with the scenario's ``train.image_size`` as ``vramplan_image_size`` (a copy; unchanged when
    None). Refuses a model whose vision tower takes one fixed size, naming it."""
    if image_size is None:
        return config
    model_type = str(config.get("model_type") or "").lower()
    if model_type not in DYNAMIC_RESOLUTION_TYPES:
        vision = config.get("vision_config")
        fixed = vision.get("image_size") if isinstance(vision, Mapping) else None
        what = f"resizes every image to {fixed} px" if fixed else "has no dynamic-resolution vision tower"
        raise ScenarioError("train.image_size", list(image_size), f"does not apply: model_type={model_type!r} {what}",
                            "image_size sizes Qwen2-VL / Qwen2.5-VL / LLaVA-NeXT images; drop it for this model")
    return {**config, "vramplan_image_size": [int(image_size[0]), int(image_size[1])]}


def image_size_of(c: Cfg) -> tuple[int, int] | None:
    """``vramplan_image_size`` of a config: [width, height] (or one side of a square) of the images the
    estimate assumes, for the families whose token count follows the image (Qwen-VL); None when absent."""
    raw = c.raw("vramplan_image_size")
    if raw is None:
        return None
    sides = list(raw) if isinstance(raw, (list, tuple)) else [raw, raw]
    if len(sides) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in sides):
        raise SpecError(f"config.vramplan_image_size={raw!r} must be [width, height] in pixels (positive ints)")
    return int(sides[0]), int(sides[1])


def mgm_backbone(config: Mapping[str, Any]) -> str | None:
    """The decoder family of an MGM config, or None when the config is not MGM.

    ``mgm`` -> llama (MGMLlamaForCausalLM, also Yi-34B and Llama-3), ``mgm_gemma`` -> gemma,
    ``mgm_mixtral`` -> mixtral; the pre-rename ``mini_gemini*`` names alike; ``"mgm": true`` marks an
    MGM config whose ``model_type`` is the backbone's own."""
    model_type = str(config.get("model_type") or "").lower()
    for prefix in ("mgm", "mini_gemini", "minigemini"):
        if model_type == prefix:
            return "llama"
        if model_type.startswith(prefix + "_"):
            return model_type[len(prefix) + 1:]
    if config.get("mgm") is True:
        return model_type or "llama"
    return None


def build_mgm(c: Cfg, backbone: str, resolve: TowerResolver) -> VLMParts:
    """MGM / Mini-Gemini (``mgm/model/mgm_arch.py``, docs/mgm.md section 1): the backbone decoder, CLIP
    ViT-L/336 (``mm_vision_tower``; 576 patch positions per pass, 5 passes per image for HD =
    ``image_grid`` 2 x 2 crops + ``image_global`` view), the ConvNeXt aux tower (``mm_vision_tower_aux``
    at ``image_size_aux``; stride-4 map with ``mm_hidden_size_aux`` channels; HD: the full map plus a
    1/``image_grid``-size copy for the global view), ``mm_projector`` and the ``vlm_uni`` mining heads."""
    build = build_decoder(c, backbone)
    clip = tower_from_config(_resolve(c, "mm_vision_tower", resolve), "vision", path="mm_vision_tower")
    positions = _patch_positions(clip, c.text("mm_vision_select_feature", "patch"), "config.mm_vision_select_feature")
    grid = c.integer("image_grid", default=1)
    image_global = c.flag("image_global", False)
    passes = grid * grid + (1 if image_global and grid > 1 else 0)
    clip = replace(clip, positions_per_pass=positions, passes_per_image=passes)
    size_aux = c.integer("image_size_aux", default=320)
    aux = tower_from_config(_resolve(c, "mm_vision_tower_aux", resolve), "vision_aux", path="mm_vision_tower_aux",
                            image_size=size_aux)
    mm_hidden = c.integer("mm_hidden_size", default=clip.hidden_size)
    aux_hidden = c.integer("mm_hidden_size_aux", default=aux.out_channels)
    if aux_hidden != aux.out_channels:
        raise SpecError(f"config.mm_hidden_size_aux={aux_hidden} must equal the aux tower's concatenated stage "
                        f"channels {aux.out_channels} ({' + '.join(map(str, aux.stage_dims))})")
    stride = aux.patch_size
    full = (size_aux // stride) ** 2
    total = full + ((size_aux // stride // grid) ** 2 if image_global and grid > 1 else 0)
    aux = replace(aux, positions_per_pass=full, aux_positions_per_image=total if total != full else 0)
    connectors = (llava_projector(c.text("mm_projector_type", "linear"), mm_hidden, build.decoder.hidden_size),
                  mgm_mining(mm_hidden, aux_hidden))
    notes = ("vision towers are frozen in every MGM recipe (optimize_vision_tower/_aux false); mm_projector and "
             "vlm_uni train",)
    return VLMParts(build, (clip, aux), connectors, passes * positions, notes)
