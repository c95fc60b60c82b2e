"""Vision-side activation memory: frozen or trained towers, their outputs, and the trainable connectors.

Split from ``activations.py`` (the decoder). Frozen towers run under ``torch.no_grad()`` (MGM
clip_encoder.py, openclip_encoder.py): only their outputs are kept, as inputs of trainable connectors;
their forward is a transient. Imports only ``vramplan.core``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import ConnectorSpec, ModelSpec, Part, VisionTowerSpec
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
    if t.attention in ("packed", "native"):
        # transformers' Qwen-VL towers: per-image (varlen) attention; only eager materialises scores, per
        # image in full-attention layers and per window in windowed ones (the largest layer is the peak)
        if scn.train.attention is Attention.EAGER:
            span = p if t.full_attention_layers or not t.window_patches else t.window_patches
            layer += t.num_heads * p * span * (b + 4)
    elif scn.train.attention is Attention.EAGER or t.kind == "vit":
        layer += t.num_heads * p * p * (b + 4)  # CLIP/SigLIP towers in these repos run eager attention
    return t.passes_per_image * layer


def _qwen_vl_block_bytes(t: VisionTowerSpec, b: int) -> int:
    """Saved bytes per patch of one trained Qwen-VL vision block without checkpointing, as autograd keeps them
    (``modeling_qwen2_vl.py`` Qwen2VLVisionBlock / ``modeling_qwen2_5_vl.py`` Qwen2_5_VLVisionBlock):
    each norm's input (LayerNorm: the 16-bit input + fp32 mean/rstd; RMSNorm: the fp32 copy, rsqrt and the
    normalised tensor) and its output read by a linear; the qkv output (v is a view of it and is saved by the
    kernel), q and k after ``apply_rotary_pos_emb_vision`` (computed in fp32, cast back), the attention output
    (saved by the kernel and by proj) and the kernel's fp32 log-sum-exp per head; the MLP: QuickGELU
    (``x * sigmoid(1.702 x)``) keeps fc1's output, the sigmoid and the product (3 i), the gated SiLU MLP keeps
    gate, SiLU, up and product (4 i)."""
    e, i = t.hidden_size, t.intermediate_size
    attn = 3 * b * e + 2 * b * e + b * e + 4 * t.num_heads
    if t.block == "qwen2_5_vl":
        norms = 2 * (4 * e + 4 + 2 * b * e)
        mlp = 4 * b * i
    else:
        norms = 2 * (2 * b * e + 8)
        mlp = 3 * b * i
    return norms + attn + mlp


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
    if t.block in ("qwen2_vl", "qwen2_5_vl"):
        per_patch = b * t.hidden_size if ckpt else _qwen_vl_block_bytes(t, b)
        eager = 0
        if scn.train.attention is Attention.EAGER and not ckpt:
            full = t.full_attention_layers if t.window_patches else t.num_layers
            windowed = (t.num_layers - full) * min(p, t.window_patches or p)
            eager = 6 * t.num_heads * (full * p + windowed)  # fp32 softmax + its 16-bit cast per layer
        return (t.num_layers * p * per_patch + p * eager) * t.passes_per_image
    per_patch = b * t.hidden_size if ckpt else 8 * b * t.hidden_size + 2 * b * t.intermediate_size + 4 * t.num_heads
    if not ckpt and (t.attention != "native" or scn.train.attention is Attention.EAGER):
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
    if c.kind == "anyres_mlp":
        # modeling_llava_next.py get_image_features: the projector maps every tower position of the base view and
        # the tiles; pack_image_features unpads and adds the newlines afterwards
        vis_tower = model.tower("vision")
        tokens = vis_tower.output_positions_per_image if vis_tower else tokens
    per_token = sum(b * lin.d_in for lin in c.linears) + sum(b * lin.d_out for lin in c.linears[:-1])
    if c.kind == "merger":
        # Qwen-VL PatchMerger (modeling_qwen2_vl.py / modeling_qwen2_5_vl.py): ln_q over each tower position,
        # then group positions per row through mlp.0, GELU, mlp.2. LayerNorm keeps fp32 mean/rstd per position
        # (under autocast it runs in fp32: its fp32 input copy replaces the tower output it would keep, and
        # mlp.0 keeps the 16-bit cast of its fp32 output); RMSNorm keeps the fp32 input copy, rsqrt and the
        # normalised tensor (its weight trains).
        vis = model.tower("vision")
        tokens = vis.output_positions_per_image // c.group if vis else tokens
        wide = c.linears[0].d_in
        if c.norm == "rmsnorm":
            per_token += 4 * wide + 4 * c.group + b * wide
        else:
            per_token += 8 * c.group + (4 * wide if autocast_on(scn) else 0)
    elif c.kind == "gemma3_pool":
        # modeling_gemma3.py Gemma3MultiModalProjector: avg_pool over the tower output (recorded only when the
        # tower trains: it saves the tower output, counted with the tower), then Gemma3RMSNorm in fp32, whose
        # trainable weight makes ``normed * (1 + weight)`` save the fp32 normalised tensor (and, when the tower
        # trains, pow/rsqrt/mul save the fp32 input copy and the rsqrt), then torch.matmul saves its 16-bit input
        # (the generic ``b * d_in`` above)
        wide = c.linears[0].d_in
        per_token += 4 * wide
        if scn.trains(Part.VISION):
            per_token += 4 * wide + 4
    return tokens * per_token


def _merger_keeps_tower_output(model: ModelSpec, scn: Scenario) -> bool:
    """Whether a trainable connector saves the frozen tower's 16-bit output itself: not a Qwen-VL merger
    whose norm saves an fp32 copy instead (RMSNorm always, LayerNorm under autocast)."""
    for c in model.connectors:
        if c.kind == "merger" and (c.norm == "rmsnorm" or autocast_on(scn)):
            return False
        if c.kind == "gemma3_pool":  # avg_pool of a frozen output is not recorded; the pooled rows are counted
            return False
    return True


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
        elif connectors_train and not (t.kind == "convnext" and mining) and _merger_keeps_tower_output(model, scn):
            # A frozen tower's output is kept as the connector's saved input. MGM's aux map is not: patch-info
            # mining copies it into patches first (traced: the (b, 2880, H, W) map is freed; the reshaped
            # copy is counted with the connector).
            saved_tower += _tower_output_bytes(t, b)
        transient = max(transient, _tower_transient_bytes(t, scn, b))
    weight_copies = 0
    if connectors_train:
        for c in model.connectors:
            saved_conn += _connector_bytes(c, scn, b)
            if autocast_on(scn):
                # autocast caches the 16-bit cast of every trainable linear's weight and bias for the whole
                # forward (torch autocast weight cache, leaf tensors that require grad), once per micro-batch
                weight_copies += 2 * sum(lin.numel for lin in c.linears)
    pixels = sum(t.passes_per_image * 3 * t.image_size ** 2 for t in model.towers if t.kind == "convnext" or not t.num_patches)
    pixels += sum(t.num_patches * 3 * 2 * t.patch_size ** 2 for t in model.towers if t.kind != "convnext" and t.num_patches)
    return VisionActivations(saved_tower * images, saved_conn * images + weight_copies, transient * images,
                             pixels * b * images)
