"""Hugging Face ``config.json`` dict -> ``ModelSpec``: the entry point and the family dispatch.

Owns ``model_from_config``: which parser handles a ``model_type`` (decoder families in ``hf_decoder``,
VLMs in ``hf_vlm``, towers in ``hf_vision``), the unknown-family error, and the default lookup of tower
configs that a VLM config only names (``vramplan/registry/towers/*.json``). It reads dicts only: it never
downloads, imports transformers or executes remote code (``auto_map`` entries are ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.errors import SpecError
from ..core.model import ModelSpec
from ._config import Cfg
from .hf_decoder import DECODER_FAMILIES, build_decoder
from .hf_vision import TOWER_TYPES
from .hf_vlm import (
    VLM_TYPES,
    TowerResolver,
    VLMParts,
    build_gemma3,
    build_llava_hf,
    build_llava_next,
    build_llava_original,
    build_mgm,
    build_qwen2_vl,
    image_size_of,
    mgm_backbone,
)


def supported_model_types() -> tuple[str, ...]:
    """Every ``model_type`` ``model_from_config`` accepts (sorted)."""
    return tuple(sorted(set(DECODER_FAMILIES) | set(VLM_TYPES)))


_NOT_MODELLED = {
    "qwen3_next": "hybrid Gated DeltaNet + attention layers", "qwen3_5": "hybrid Gated DeltaNet + attention layers",
    "jamba": "hybrid Mamba + attention layers", "bamba": "hybrid Mamba-2 + attention layers",
    "granitemoehybrid": "hybrid Mamba-2 + attention layers", "falcon_h1": "hybrid Mamba-2 + attention layers",
    "nemotron_h": "hybrid Mamba-2 + attention layers", "zamba": "hybrid Mamba + shared attention layers",
    "zamba2": "hybrid Mamba-2 + shared attention layers", "mamba": "state-space (Mamba) layers",
    "mamba2": "state-space (Mamba-2) layers", "falcon_mamba": "state-space (Mamba) layers",
    "rwkv": "RWKV recurrent layers", "recurrent_gemma": "RG-LRU recurrent layers", "lfm2": "hybrid convolution layers",
    "xlstm": "xLSTM recurrent layers", "minimax": "hybrid lightning-attention layers",
}
"""Families whose layers are not attention + MLP; named in the error so nobody mistakes them for a typo."""

_NEAREST = {"llama4": "llama4_text", "qwen2_5": "qwen2", "qwen3_vl": "qwen2_vl",
            "mistral3": "mistral", "internlm2": "internlm3", "phi4": "phi3", "gemma3n": "gemma3_text",
            "glm4_moe": "glm4", "exaone": "exaone4"}
"""A model_type and the supported one it is closest to in structure (used when difflib finds no near name)."""


def _unsupported(model_type: str) -> str:
    """The one-line error for an unknown model_type: why (hybrid/SSM families), the nearest supported family or
    preset, and the supported list."""
    supported = supported_model_types()
    why = f" ({_NOT_MODELLED[model_type]} are not modelled)" if model_type in _NOT_MODELLED else ""
    import difflib

    near = [n for n in (_NEAREST.get(model_type),) if n in supported]
    near = (near + [n for n in difflib.get_close_matches(model_type, supported, n=2, cutoff=0.6) if n not in near])[:2]
    hint = ""
    if near and not why:
        hint = f"; nearest supported family: {', '.join(near)} (set model_type only if the modules really match)"
    from ..registry import list_presets

    presets = [p.id for p in list_presets()]
    close = difflib.get_close_matches(model_type.replace("_", "-"), presets, n=2, cutoff=0.5)
    if close:
        hint += f"; or a preset: {', '.join(close)}"
    return (f"config.model_type={model_type!r} is not supported{why}{hint}; "
            f"supported: {','.join(supported)}")


def _default_resolver(ref: str) -> Mapping[str, Any] | None:
    """Tower configs shipped with vramplan (``vramplan.registry.towers``)."""
    from ..registry.towers import find_tower_config

    return find_tower_config(ref)


def _vlm(c: Cfg, model_type: str, resolve: TowerResolver) -> VLMParts | None:
    backbone = mgm_backbone(c.data)
    if backbone is not None:
        return build_mgm(c, backbone, resolve)
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        return build_qwen2_vl(c, model_type)
    if model_type == "gemma3":
        return build_gemma3(c)
    if model_type == "llava_next":
        return build_llava_next(c, image_size_of(c))
    if model_type in ("llava", "llava_llama", "llava_mistral"):
        if c.has("text_config") or (model_type == "llava" and not c.has("mm_vision_tower")):
            return build_llava_hf(c)
        return build_llava_original(c, model_type, resolve)
    return None


def model_from_config(config: Mapping[str, Any], name: str = "custom", source: str = "", *,
                      resolve_tower: TowerResolver | None = None) -> ModelSpec:
    """Parse a ``config.json`` dict into a ``ModelSpec`` with exact parameter counts.

    ``resolve_tower`` maps a tower reference (``mm_vision_tower``) to its config dict; the default looks
    in vramplan's tower registry. Raises ``SpecError`` for an unknown ``model_type`` (listing the
    supported ones), a missing required key (naming it) or inconsistent values.
    """
    c = Cfg(config, "config")
    model_type = str(c.raw("model_type") or "").lower()
    if not model_type:
        raise SpecError("config: required key 'model_type' is missing; supported: "
                        + ", ".join(supported_model_types()))
    if model_type in TOWER_TYPES:
        raise SpecError(f"config.model_type={model_type!r} is a vision tower, not a language model; "
                        "use vramplan.adapters.tower_from_config for it")
    resolve = resolve_tower or _default_resolver
    parts = _vlm(c, model_type, resolve)
    if parts is None:
        if model_type not in DECODER_FAMILIES:
            raise SpecError(_unsupported(model_type))
        parts = VLMParts(build_decoder(c, model_type), (), (), 0)
    build = parts.build
    return ModelSpec(
        name=name, model_type=model_type, decoder=build.decoder, towers=parts.towers, connectors=parts.connectors,
        image_tokens=parts.image_tokens, source=source, moe_block_class=build.moe_block_class,
        decoder_layer_class=build.decoder_layer_class, notes=build.notes + parts.notes,
    )
