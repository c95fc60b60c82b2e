"""Vision-side activation memory: frozen or trained towers, their outputs, and the trainable connectors.

Split from ``activations.py`` (the decoder). Frozen towers run under ``torch.no_grad()`` (MGM
clip_encoder.py, openclip_encoder.py): only their outputs are kept, as inputs of trainable connectors;
their forward is a transient. Imports only ``vramplan.core``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import ConnectorSpec, Part, VisionTowerSpec
from ..scenario import Attention, Engine, GradCkpt, Precision, Scenario
from .params import RankParams


def activation_dtype_bytes(scn: Scenario) -> int:
    """Bytes per activation element: 4 in fp32 training, else 2."""
    from ..scenario import Precision

    return 4 if scn.train.precision is Precision.FP32 else 2


@dataclass(frozen=True, slots=True)
class VisionActivations:
    """Vision-side activation bytes per micro-batch."""

    saved_tower: int
    """Tower outputs kept as connector inputs, plus trainable tower activations."""
    saved_connector: int
    """Saved tensors of trainable connectors (projector, MGM patch-info mining)."""
    tower_transient: int
    """Peak transient while the towers run (before the LLM forward)."""
    inputs: int = 0
    """The micro-batch's pixel tensors, on the GPU for the whole step (HF Trainer moves the batch there)."""


def _tower_output_bytes(t: VisionTowerSpec, b: int) -> int:
    """Bytes of one image's tower output."""
    channels = t.out_channels or t.hidden_size
    return t.output_positions_per_image * channels * b


def _tower_transient_bytes(t: VisionTowerSpec, scn: Scenario, b: int) -> int:
    """Largest transient of one image's no-grad tower forward."""
    if t.kind == "convnext":
        # MGM openclip_encoder: every stage upsampled to the stride-4 grid in fp32 and concatenated,
        # then cast back: 4 + 2 bytes per output element (mgm.md §1.2).
        return t.output_positions_per_image * (t.out_channels or sum(t.stage_dims)) * (4 + b)
    p = t.patches_per_pass
    layer = p * (6 * t.hidden_size + 2 * t.intermediate_size) * b
    if scn.train.attention is Attention.EAGER or t.kind == "vit":
        layer += t.num_heads * p * p * (b + 4)  # CLIP/SigLIP towers in these repos run eager attention
    return t.passes_per_image * layer


def _trainable_tower_bytes(t: VisionTowerSpec, scn: Scenario, b: int) -> int:
    """Saved activations of one image through a trained tower (Korthikanti block without dropout)."""
    ckpt = scn.train.grad_ckpt is GradCkpt.FULL
    if t.kind == "convnext":
        side = t.image_size // 4
        total = 0
        for s, (d, depth) in enumerate(zip(t.stage_dims, t.stage_depths)):
            positions = (side >> s) ** 2
            total += positions * depth * (b * d if ckpt else 12 * b * d)
        return total * t.passes_per_image
    p = t.patches_per_pass
    per_patch = b * t.hidden_size if ckpt else 8 * b * t.hidden_size + 2 * b * t.intermediate_size + 4 * t.num_heads
    if not ckpt:
        per_patch += 6 * t.num_heads * p  # eager attention probabilities
    return t.num_layers * p * per_patch * t.passes_per_image


def autocast_on(scn: Scenario) -> bool:
    """16-bit autocast runs the forward (mixed precision outside DeepSpeed, FSDP's included)."""
    return scn.train.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED) and scn.parallel.engine is not Engine.DEEPSPEED


def _connector_bytes(c: ConnectorSpec, scn: Scenario, b: int) -> int:
    """Saved bytes of one trainable connector per image."""
    model = scn.model
    if c.kind == "mgm_mining":
        aux = model.tower("vision_aux")
        positions = aux.output_positions_per_image if aux else 0
        aux_ch = aux.out_channels if aux else 0
        width = max((lin.d_out for lin in c.linears), default=0)
        # Per aux position: the reshaped 2880-channel copy (saved by both LayerNorms) and the two LayerNorm
        # outputs (aux and value heads), the scaled aux keys and the values (2 x width). Under autocast,
        # LayerNorm runs in fp32 (CUDA autocast fp32 list): each LayerNorm saves its own fp32 copy of the
        # input and each linear its 16-bit cast of the fp32 output (traced: 2 x fp32 + 2 x bf16 copies).
        ln = 12 * aux_ch if autocast_on(scn) else 3 * b * aux_ch
        per_position = ln + b * 2 * width
        query_tokens = model.image_tokens
        return positions * per_position + query_tokens * b * 4 * width
    tokens = model.image_tokens
    if c.kind == "merger":
        vis = model.tower("vision")
        tokens = vis.output_positions_per_image // 4 if vis else tokens
    per_token = sum(b * lin.d_in for lin in c.linears) + sum(b * lin.d_out for lin in c.linears[:-1])
    return tokens * per_token


def vision_activations(scn: Scenario, rp: RankParams) -> VisionActivations:
    """Vision-side activation bytes on the rank that holds the towers."""
    model = scn.model
    images = scn.train.micro_batch * scn.train.images_per_sample
    if not rp.holds_vision or images == 0:
        return VisionActivations(0, 0, 0)
    b = activation_dtype_bytes(scn)
    saved_tower = transient = saved_conn = 0
    connectors_train = scn.trains(Part.PROJECTOR)
    mining = any(c.kind == "mgm_mining" for c in model.connectors)
    for t in model.towers:
        part = Part(t.name)
        if scn.trains(part):
            saved_tower += _trainable_tower_bytes(t, scn, b) + _tower_output_bytes(t, b)
        elif connectors_train and not (t.kind == "convnext" and mining):
            # A frozen tower's output is kept as the connector's saved input. MGM's aux map is not: patch-info
            # mining copies it into patches first (traced: the (b, 2880, H, W) map is freed; the reshaped
            # copy is counted with the connector).
            saved_tower += _tower_output_bytes(t, b)
        transient = max(transient, _tower_transient_bytes(t, scn, b))
    if connectors_train:
        for c in model.connectors:
            saved_conn += _connector_bytes(c, scn, b)
    pixels = sum(t.passes_per_image * 3 * t.image_size ** 2 for t in model.towers if t.kind == "convnext" or not t.num_patches)
    pixels += sum(t.num_patches * 3 * 2 * t.patch_size ** 2 for t in model.towers if t.kind != "convnext" and t.num_patches)
    return VisionActivations(saved_tower * images, saved_conn * images, transient * images, pixels * b * images)
