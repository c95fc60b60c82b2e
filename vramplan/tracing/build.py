"""Build the model of a scenario with transformers on fake tensors, set up as the training run would have it.

Owns: which transformers class a ``config.json`` becomes (decoder families through ``AutoModelForCausalLM``,
llava-hf through ``LlavaForConditionalGeneration``, MGM and the original LLaVA composed in ``vlm.py``), the
dtypes of trainable and frozen weights per engine and precision (``DtypePolicy``, the same rules as
``core/memory/states.py``), freezing, LoRA through PEFT, the QLoRA 4-bit stand-in, activation checkpointing,
the attention and MoE-experts implementations, and the inputs of one micro-batch.

Choices that keep the fake-CPU run equal to the CUDA run (tracing-on-cpu.md):
- attention ``flash`` -> transformers ``sdpa`` without a mask: on fake CPU tensors SDPA takes
  ``_scaled_dot_product_flash_attention_for_cpu``, which saves q, k, v, the output and the fp32
  log-sum-exp like FlashAttention-2 (§6 item 4); ``sdpa`` -> SDPA with a padding mask (all ones: padded
  batches as HF collators make them), which on CUDA runs the mem-efficient kernel with the mask and
  repeat_kv; ``eager`` -> eager;
- MoE experts -> ``grouped_mm`` (transformers 5 default; sort + histc offsets, no data-dependent shapes).
  The per-expert ``nonzero`` loop (``eager``) cannot run on fake tensors (§6 item 2); ``grouped_mm``
  keeps the same per-routed-token tensors;
- QLoRA: bitsandbytes ``Linear4bit`` cannot hold FakeTensors (§6 item 8); ``Linear4bitStandIn`` holds a
  uint8 weight of NF4 + double-quant size and runs MatMul4Bit's memory pattern (dequantize to the compute
  dtype, save the input, dequantize again in backward).

Imports torch/transformers/peft (inside functions where optional) and ``vramplan.core``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.errors import VramplanError
from ..core.memory.params import quantized_bytes
from ..core.model import Part
from ..core.scenario import Attention, Engine, GradCkpt, Method, Precision, Scenario
from . import vlm

REMOTE_CODE_TYPES = {"deepseek": "DeepSeek-MoE (remote code)", "qwen": "Qwen-1 (remote code)"}


class TraceUnsupported(VramplanError):
    """The scenario uses something the tracer cannot build or run; the analytical estimate still works."""


@dataclass(frozen=True, slots=True)
class DtypePolicy:
    """Weight dtypes and autocast of one scenario (``core/memory/states.py`` rules)."""

    trainable: torch.dtype
    frozen: torch.dtype
    compute: torch.dtype
    autocast: bool


def dtype_policy(scn: Scenario) -> DtypePolicy:
    """DeepSpeed casts the whole model to 16-bit; HF Trainer/accelerate keep trainable weights in fp32 under
    autocast (FSDP: accelerate upcasts them, the MixedPrecisionPolicy gathers 16-bit); bf16-pure is bf16."""
    p = scn.train.precision
    if p is Precision.FP32:
        return DtypePolicy(torch.float32, torch.float32, torch.float32, False)
    half = torch.float16 if p is Precision.FP16_MIXED else torch.bfloat16
    if scn.parallel.engine is Engine.DEEPSPEED or p is Precision.BF16_PURE:
        return DtypePolicy(half, half, half, False)
    return DtypePolicy(torch.float32, half, half, True)


@dataclass
class Built:
    """A model ready to train on fake tensors and what the tracker and the runner need to know about it."""

    model: nn.Module
    inputs: dict[str, Any]
    forward: Callable[[], torch.Tensor]
    """One micro-batch forward; returns the loss (outputs dropped, as HF Trainer's compute_loss does)."""
    parts: list[tuple[nn.Module, str]]
    lm_head: nn.Module
    layers: list[nn.Module]
    """Decoder layers (checkpoint units, FSDP units)."""
    ckpt_layers: list[nn.Module]
    policy: DtypePolicy
    notes: list[str] = field(default_factory=list)

    @property
    def trainable(self) -> list[nn.Parameter]:
        """Parameters that get gradients."""
        return [p for p in self.model.parameters() if p.requires_grad]


# ---- transformers configs ------------------------------------------------------------------------------
def _kind(config: dict[str, Any]) -> tuple[str, str]:
    """(kind, backbone model_type): kind in decoder, llava_hf, mgm, llava_orig, qwen_vl, gemma3, llava_next."""
    from ..adapters.hf_vlm import mgm_backbone

    model_type = str(config.get("model_type") or "").lower()
    backbone = mgm_backbone(config)
    if backbone is not None:
        return "mgm", backbone
    if model_type in QWEN_VL_TYPES:
        return "qwen_vl", model_type
    if model_type in ("gemma3", "llava_next"):
        return model_type, model_type
    if model_type in ("llava", "llava_llama", "llava_mistral"):
        if config.get("text_config") is not None or (model_type == "llava" and not config.get("mm_vision_tower")):
            return "llava_hf", model_type
        return "llava_orig", "mistral" if model_type == "llava_mistral" else "llama"
    return "decoder", model_type


QWEN_VL_TYPES = ("qwen2_vl", "qwen2_5_vl")
"""Qwen-VL model_types built whole by ``AutoModelForImageTextToText`` (vision metadata precomputed, vlm.py)."""


def _image_text_to_text(model_type: str, data: dict[str, Any], scn: Scenario) -> tuple[nn.Module, str]:
    """A transformers-native VLM (``AutoModelForImageTextToText``) and the vision attention function the trace
    registers for its packed tower (``vlm.VarlenSegments``)."""
    from transformers import AutoModelForImageTextToText

    cfg = _hf_config(model_type, data)
    text = getattr(cfg, "text_config", None)
    if text is not None:
        text.use_cache = False
    if model_type == "gemma3":
        from transformers.initialization import no_init_weights

        # SigLIP's lecun_normal_ init (truncated normal) reads values, which fake tensors do not have; the
        # values never change a byte
        with no_init_weights():
            model = AutoModelForImageTextToText.from_config(cfg, attn_implementation=attn_implementation(scn))
        model.tie_weights()  # init_weights, which no_init_weights skips, is where transformers 5 ties lm_head
    else:
        model = AutoModelForImageTextToText.from_config(cfg, attn_implementation=attn_implementation(scn))
    model.vramplan_image_size = data.get("vramplan_image_size")  # [w, h] of train.image_size (LLaVA-NeXT inputs)
    if model_type in QWEN_VL_TYPES:
        segments = vlm.VarlenSegments()
        model.vramplan_segments = segments
        model.model.visual.config._attn_implementation = segments.register(scn.train.attention is Attention.EAGER)
    return model, model_type


def _hf_config(model_type: str, data: dict[str, Any]) -> Any:
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type in REMOTE_CODE_TYPES or model_type not in CONFIG_MAPPING:
        what = REMOTE_CODE_TYPES.get(model_type, f"model_type {model_type!r}")
        raise TraceUnsupported(f"tracing needs a transformers model class; {what} has none in transformers "
                               f"(use --estimator analytic, or `vramplan calibrate` on a transformers family)")
    clean = {k: v for k, v in data.items() if k not in ("model_type", "architectures", "auto_map", "transformers_version")
             and not k.startswith(("_", "vramplan_"))}
    clean["use_cache"] = False
    return AutoConfig.for_model(model_type, **clean)


EXPERTS_AS_BMM = frozenset({"llama4_text"})
"""MoE families whose experts are a plain ``torch.bmm`` (``Llama4TextExperts``): their classes refuse the
``experts_implementation`` argument."""


def attn_implementation(scn: Scenario) -> str:
    """transformers attention implementation the trace uses for the scenario's choice (module docstring)."""
    return "eager" if scn.train.attention is Attention.EAGER else "sdpa"


def _causal_lm(model_type: str, data: dict[str, Any], scn: Scenario) -> nn.Module:
    from transformers import AutoModelForCausalLM

    cfg = _hf_config(model_type, data)
    kwargs: dict[str, Any] = {"attn_implementation": attn_implementation(scn)}
    if scn.model.is_moe and model_type not in EXPERTS_AS_BMM:
        kwargs["experts_implementation"] = "grouped_mm"
    return AutoModelForCausalLM.from_config(cfg, **kwargs)


TowerResolver = Callable[[str], "dict[str, Any] | None"]


def _tower_config(ref: str, resolve: TowerResolver | None) -> dict[str, Any]:
    from ..registry import find_tower_config

    found = (resolve or find_tower_config)(ref)
    if found is None:
        raise TraceUnsupported(f"no tower config is known for {ref!r}; add it to vramplan/registry/towers/")
    return dict(found)


def _clip_config(ref: str, resolve: TowerResolver | None) -> Any:
    from transformers import CLIPVisionConfig

    data = _tower_config(ref, resolve)
    if data.get("model_type") == "clip":
        data = dict(data.get("vision_config") or {})
    data = {k: v for k, v in data.items() if k != "model_type" and not k.startswith("_")}
    cfg = CLIPVisionConfig(**data)
    cfg._attn_implementation = "eager"
    return cfg


def _composed(kind: str, backbone: str, data: dict[str, Any], scn: Scenario,
              resolve: TowerResolver | None) -> vlm.ComposedVLM:
    llm = _causal_lm(backbone, data, scn)
    select = int(data.get("mm_vision_select_layer", -2))
    with_cls = str(data.get("mm_vision_select_feature", "patch")) in ("cls_patch", "full")
    clip = vlm.CLIPTower(_clip_config(str(data["mm_vision_tower"]), resolve), select, with_cls)
    hidden = llm.config.hidden_size
    mm_hidden = int(data.get("mm_hidden_size") or clip.vision_tower.config.hidden_size)
    projector = vlm.mlp_projector(str(data.get("mm_projector_type", "linear")), mm_hidden, hidden)
    if kind == "llava_orig":
        return vlm.ComposedVLM(llm, clip, projector)
    from transformers import ConvNextConfig

    aux_data = {k: v for k, v in _tower_config(str(data["mm_vision_tower_aux"]), resolve).items()
                if k != "model_type" and not k.startswith("_")}
    aux = vlm.ConvNeXtAuxTower(ConvNextConfig(**aux_data))
    mining = vlm.PatchInfoMining(mm_hidden, int(data.get("mm_hidden_size_aux") or sum(aux_data["hidden_sizes"])))
    return vlm.ComposedVLM(llm, clip, projector, aux=aux, mining=mining, image_grid=int(data.get("image_grid", 1)),
                           image_global=bool(data.get("image_global", False)))


# ---- training set-up -----------------------------------------------------------------------------------
def _part_modules(model: nn.Module, kind: str) -> dict[Part, list[nn.Module]]:
    if kind in ("mgm", "llava_orig"):
        assert isinstance(model, vlm.ComposedVLM)
        out = {Part.LLM: [model.llm], Part.VISION: [model.vision_tower], Part.PROJECTOR: [model.mm_projector]}
        if model.vision_tower_aux is not None and model.mining is not None:
            out[Part.VISION_AUX] = [model.vision_tower_aux]
            out[Part.PROJECTOR].append(model.mining)
        return out
    if kind == "llava_hf":
        inner = model.model
        return {Part.LLM: [inner.language_model, model.lm_head], Part.VISION: [inner.vision_tower],
                Part.PROJECTOR: [inner.multi_modal_projector]}
    if kind in ("gemma3", "llava_next"):  # LLaVA-NeXT's image_newline: set with the projector in build()
        inner = model.model
        return {Part.LLM: [inner.language_model, model.lm_head], Part.VISION: [inner.vision_tower],
                Part.PROJECTOR: [inner.multi_modal_projector]}
    if kind == "qwen_vl":  # the merger sits inside ``visual``: the PROJECTOR entry comes last and wins
        inner = model.model
        return {Part.LLM: [inner.language_model, model.lm_head], Part.VISION: [inner.visual],
                Part.PROJECTOR: [inner.visual.merger]}
    return {Part.LLM: [model]}


def _llm(model: nn.Module, kind: str) -> nn.Module:
    if kind in ("mgm", "llava_orig"):
        return model.llm  # type: ignore[return-value]
    if kind in ("llava_hf", "qwen_vl", "gemma3", "llava_next"):
        return model.model.language_model  # type: ignore[return-value]
    return model


def _set_dtype(params: list[nn.Parameter], dtype: torch.dtype) -> None:
    for p in params:
        if p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)


def _decoder_layers(llm: nn.Module) -> list[nn.Module]:
    """The decoder's layer stack: a ``layers`` ModuleList of ``*DecoderLayer`` (most families), GPT-NeoX's
    ``layers`` of ``GPTNeoXLayer``, or Falcon's ``transformer.h`` of ``FalconDecoderLayer``."""
    for mod in llm.modules():
        for attr in ("layers", "h"):
            layers = getattr(mod, attr, None)
            if isinstance(layers, nn.ModuleList) and len(layers) and type(layers[0]).__name__.endswith("Layer"):
                return list(layers)
    raise TraceUnsupported(f"cannot find the decoder layers of {type(llm).__name__}")


def _lora_target_names(scn: Scenario, layers: list[nn.Module], prefix: dict[nn.Module, str]) -> tuple[list[str], list[str]]:
    """Full names of the ``nn.Linear`` modules LoRA adapts, and vramplan names with no Linear (fused experts)."""
    wanted = scn.lora_linear_names()
    shorts = {n.split(".")[-1] for n in wanted} | wanted
    found: set[str] = set()
    names = []
    for layer in layers:
        for name, mod in layer.named_modules():
            if isinstance(mod, nn.Linear) and name and (name.split(".")[-1] in shorts or name in shorts):
                names.append(f"{prefix[layer]}.{name}")
                found.add(name.split(".")[-1])
    missing = sorted({n.split(".")[-1] for n in wanted} - found)
    return names, missing


def _apply_lora(scn: Scenario, model: nn.Module, layers: list[nn.Module], policy: DtypePolicy, fake_mode: Any) -> list[str]:
    from ._deps import require_peft
    from .patches import fake_swap_tensors

    peft = require_peft()
    named = {m: n for n, m in model.named_modules()}
    targets, missing = _lora_target_names(scn, layers, named)
    notes = []
    if missing:
        notes.append(f"LoRA targets {', '.join(missing)} are fused expert parameters in transformers 5 (no nn.Linear); "
                     "the trace adapts only the nn.Linear modules, the analytical model counts adapters on every expert")
    lora = scn.train.lora
    cfg = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)
    with fake_swap_tensors(fake_mode):
        peft.inject_adapter_in_model(cfg, model)
    adapters = [p for n, p in model.named_parameters() if "lora_" in n]
    _set_dtype(adapters, policy.trainable)  # fp32 (PEFT autocast_adapter_dtype) unless DeepSpeed casts to 16-bit
    for p in adapters:
        p.requires_grad_(True)
    return notes


class _MatMul4BitStandIn(torch.autograd.Function):
    """bitsandbytes ``MatMul4Bit``: dequantize, linear, save (A, B); dequantize again in backward."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, qweight: torch.Tensor, shape: tuple[int, int], bias: torch.Tensor | None) -> torch.Tensor:
        w = torch.empty(shape, dtype=a.dtype, device=a.device)
        out = torch.nn.functional.linear(a, w, bias)
        del w
        ctx.shape = shape
        ctx.has_bias = bias is not None
        ctx.save_for_backward(a, qweight)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        _a, _q = ctx.saved_tensors
        w = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device)
        grad_a = grad @ w
        del w
        grad_bias = grad.sum(dim=tuple(range(grad.dim() - 1))) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return grad_a, None, None, grad_bias


class Linear4bitStandIn(nn.Module):
    """A frozen 4-bit linear of NF4 + double-quant size (``core.memory.params.quantized_bytes``) that runs
    bitsandbytes ``Linear4bit.forward``: cast to the compute dtype, MatMul4Bit, cast back."""

    def __init__(self, lin: nn.Linear, compute: torch.dtype) -> None:
        super().__init__()
        self.in_features, self.out_features = lin.in_features, lin.out_features
        nbytes = quantized_bytes(lin.in_features * lin.out_features)
        self.weight = nn.Parameter(torch.empty(nbytes, dtype=torch.uint8, device=lin.weight.device), requires_grad=False)
        self.bias = lin.bias
        self.compute = compute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp_dtype = x.dtype
        bias = None if self.bias is None else self.bias.to(self.compute)
        out = _MatMul4BitStandIn.apply(x.to(self.compute), self.weight, (self.out_features, self.in_features), bias)
        return out.to(inp_dtype)


def _apply_qlora(layers: list[nn.Module], compute: torch.dtype) -> None:
    """Every decoder-layer linear (LoRA's base layers included) becomes a 4-bit stand-in."""
    for layer in layers:
        for name, mod in list(layer.named_modules()):
            if "lora_" in name:
                continue
            for child_name, child in list(mod.named_children()):
                if type(child) is nn.Linear and child.out_features > 1 and not (child_name == "gate" and "mlp" in name):
                    setattr(mod, child_name, Linear4bitStandIn(child, compute))


def _selective_attention(scn: Scenario) -> str:
    """Register an attention function that recomputes the attention core in backward (selective recompute)."""
    from torch.utils.checkpoint import checkpoint
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.llama.modeling_llama import eager_attention_forward

    inner = eager_attention_forward if scn.train.attention is Attention.EAGER else sdpa_attention_forward
    name = "vramplan_selective_" + inner.__name__

    def attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
        out = checkpoint(lambda q, k, v: inner(module, q, k, v, attention_mask, **kwargs)[0], query, key, value,
                         use_reentrant=False)
        return out, None

    AttentionInterface.register(name, attention)
    return name


def build(scn: Scenario, config: dict[str, Any], fake_mode: Any, resolve_tower: TowerResolver | None = None) -> Built:
    """The scenario's model under ``fake_mode``, frozen/LoRA/checkpointed as it trains, with one micro-batch."""
    if scn.parallel.tp > 1 or scn.parallel.pp > 1 or scn.parallel.ep > 1:
        raise TraceUnsupported("tracing covers one rank without tensor/pipeline/expert parallelism (tp=pp=ep=1); "
                               "use --estimator analytic for tp/pp/ep layouts")
    if scn.train.loss.value != "standard":
        raise TraceUnsupported("tracing models the standard transformers loss; loss=chunked (Liger) is analytic only")
    kind, backbone = _kind(config)
    policy = dtype_policy(scn)
    notes: list[str] = []
    torch.set_default_dtype(policy.frozen)
    try:
        if kind in ("mgm", "llava_orig"):
            model: nn.Module = _composed(kind, backbone, config, scn, resolve_tower)
        elif kind == "llava_hf":
            from transformers import AutoConfig, LlavaForConditionalGeneration

            cfg = AutoConfig.for_model("llava", **{k: v for k, v in config.items() if k != "model_type"})
            cfg.text_config.use_cache = False
            model = LlavaForConditionalGeneration._from_config(cfg, attn_implementation=attn_implementation(scn))
        elif kind in ("qwen_vl", "gemma3", "llava_next"):
            model, _ = _image_text_to_text(backbone, config, scn)
        else:
            model = _causal_lm(backbone, config, scn)
    finally:
        torch.set_default_dtype(torch.float32)
    model.train()
    parts = _part_modules(model, kind)
    llm = _llm(model, kind)
    layers = _decoder_layers(llm)
    method = scn.train.method
    for part, mods in parts.items():
        trains = scn.trains(part)
        for m in mods:
            for p in m.parameters():
                p.requires_grad_(trains)
            _set_dtype(list(m.parameters()), policy.trainable if trains else policy.frozen)
    if kind == "llava_next":  # a bare parameter of LlavaNextModel, trained with the projector (LLaVA-NeXT recipes)
        newline = model.model.image_newline
        newline.requires_grad_(scn.trains(Part.PROJECTOR))
        _set_dtype([newline], policy.trainable if scn.trains(Part.PROJECTOR) else policy.frozen)
    if method in (Method.LORA, Method.QLORA):
        notes += _apply_lora(scn, model, layers, policy, fake_mode)
        # PEFT marks only the adapters trainable; the parts the recipe trains fully (projector) train again
        for part, mods in parts.items():
            if part is not Part.LLM and scn.trains(part):
                for m in mods:
                    for p in m.parameters():
                        p.requires_grad_(True)
        if kind == "llava_next" and scn.trains(Part.PROJECTOR):
            model.model.image_newline.requires_grad_(True)
    if method is Method.QLORA:
        _apply_qlora(layers, policy.compute)
        # prepare_model_for_kbit_training: every remaining 16-bit parameter to fp32 (peft utils/other.py).
        _set_dtype([p for p in llm.parameters() if p.dtype in (torch.float16, torch.bfloat16)], torch.float32)
    ckpt_layers: list[nn.Module] = []
    if scn.train.grad_ckpt is GradCkpt.FULL:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        ckpt_layers = layers
    elif scn.train.grad_ckpt is GradCkpt.SELECTIVE:
        llm.config._attn_implementation = _selective_attention(scn)
        notes.append("selective recompute: the attention core is checkpointed (no transformers equivalent exists)")
    from .inputs import make_inputs

    inputs, forward = make_inputs(scn, model, kind)
    lm_head = model.lm_head if kind in ("decoder", "llava_hf", "qwen_vl", "gemma3", "llava_next") else llm.lm_head
    part_list: list[tuple[nn.Module, str]] = [(model, "llm")]
    for part, mods in parts.items():
        if part in (Part.VISION, Part.VISION_AUX):
            part_list += [(m, "vision") for m in mods]
        elif part is Part.PROJECTOR:
            part_list += [(m, "projector") for m in mods]
    return Built(model=model, inputs=inputs, forward=forward, parts=part_list, lm_head=lm_head, layers=layers,
                 ckpt_layers=ckpt_layers, policy=policy, notes=notes)
