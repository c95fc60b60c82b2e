"""A training scenario: model, how it trains, on what hardware, with which parallelism.

Field names follow the scenario file (``train.micro_batch``, ``parallel.zero`` ...) so that validation
errors name what the user typed. Defaults are what HF Trainer + DeepSpeed would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .errors import ScenarioError
from .hardware import ClusterSpec
from .model import ModelSpec, Part
from .profile import ActivationProfile


class Choice(str, Enum):
    """A value the user types; ``parse`` gives a one-line error listing the valid ones."""

    @classmethod
    def parse(cls, field_name: str, value: object) -> Choice:
        """The member whose value is ``value`` (case-insensitive, '_' and '-' alike)."""
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower().replace("_", "-")
        for member in cls:
            if member.value == text:
                return member
        valid = ", ".join(m.value for m in cls)
        raise ScenarioError(field_name, value, "unknown value", f"use one of: {valid}")

    def __str__(self) -> str:
        return str(self.value)


class Method(Choice):
    """What trains: all weights, LoRA adapters, LoRA on a 4-bit base, or only some parts."""

    FULL = "full"
    LORA = "lora"
    QLORA = "qlora"
    FREEZE = "freeze"


class Precision(Choice):
    """Number formats of weights, gradients and compute."""

    FP32 = "fp32"
    FP16_MIXED = "fp16-mixed"
    BF16_MIXED = "bf16-mixed"
    BF16_PURE = "bf16-pure"


class Optimizer(Choice):
    """Optimizer whose states are kept per trainable parameter."""

    ADAMW = "adamw"
    """torch AdamW, foreach implementation (HF ``adamw_torch``)."""
    ADAMW_FUSED = "adamw-fused"
    ADAMW_8BIT = "adamw-8bit"
    PAGED_ADAMW_8BIT = "paged-adamw-8bit"
    ADAFACTOR = "adafactor"
    SGD = "sgd"


class GradCkpt(Choice):
    """Activation recomputation."""

    NONE = "none"
    SELECTIVE = "selective"
    FULL = "full"


class Attention(Choice):
    """Attention implementation."""

    FLASH = "flash"
    SDPA = "sdpa"
    EAGER = "eager"


class Loss(Choice):
    """Cross-entropy over the full fp32 logits, or chunked / fused-linear (Liger FLCE)."""

    STANDARD = "standard"
    CHUNKED = "chunked"


class Engine(Choice):
    """Training engine."""

    SINGLE = "single"
    DDP = "ddp"
    DEEPSPEED = "deepspeed"
    FSDP = "fsdp"
    FSDP2 = "fsdp2"


class Offload(Choice):
    """Where offloaded states live."""

    NONE = "none"
    CPU = "cpu"
    NVME = "nvme"


class FsdpSharding(Choice):
    """FSDP sharding strategy."""

    FULL_SHARD = "full-shard"
    SHARD_GRAD_OP = "shard-grad-op"
    HYBRID_SHARD = "hybrid-shard"
    NO_SHARD = "no-shard"


LORA_TARGET_ALIASES = {"c_attn": "qkv_proj", "query_key_value": "qkv_proj", "Wqkv": "qkv_proj", "c_proj": "o_proj"}
"""Fused-projection names of remote-code families mapped to vramplan's module names; used only for a target
that names no linear of the model itself (StarCoder2's ``c_proj`` is its MLP down projection)."""

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Llama's names for every linear of a decoder layer. As the default they stand for what PEFT's ``all-linear``
adapts in any family: every ``nn.Linear`` of attention and of the dense MLP / shared experts, whatever the family
calls them (StarCoder2 ``c_fc``/``c_proj``, GPT-NeoX ``query_key_value``/``dense``/``dense_h_to_4h``/
``dense_4h_to_h``, Phi ``dense``/``fc1``/``fc2``, Phi-3 ``qkv_proj``/``gate_up_proj``); not the MoE router or
Qwen-MoE's shared-expert gate, and not fused 3-D expert parameters, which are no ``nn.Linear`` (PEFT
``tuners_utils``: all-linear = the ``nn.Linear`` modules but the output layer).
Routed experts still match these names where vramplan names them so (Qwen-MoE), as before."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoraSpec:
    """LoRA adapter settings (PEFT)."""

    r: int = 16
    alpha: int = 32
    targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    """Module names adapters attach to; ``all-linear`` means every decoder linear."""
    dropout: float = 0.05

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ScenarioError("train.lora.r", self.r, "must be at least 1", "typical values are 8-128")
        if not 0.0 <= self.dropout < 1.0:
            raise ScenarioError("train.lora.dropout", self.dropout, "must be in [0, 1)")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainSpec:
    """How the model trains."""

    method: Method = Method.FULL
    trainable: tuple[Part, ...] = (Part.LLM, Part.PROJECTOR)
    """Parts that train (full / freeze). Vision towers are frozen unless listed."""
    lora: LoraSpec = field(default_factory=LoraSpec)
    precision: Precision = Precision.BF16_MIXED
    optimizer: Optimizer = Optimizer.ADAMW
    micro_batch: int = 1
    """Per-device micro-batch (``per_device_train_batch_size``)."""
    grad_accum: int = 1
    seq_len: int = 2048
    """Tokens per sample entering the LLM, image tokens included."""
    images_per_sample: int = 1
    """Images per sample for VLMs (0 for text-only)."""
    image_size: tuple[int, int] | None = None
    """(width, height) in pixels of the training images, for dynamic-resolution towers (Qwen2-VL/2.5-VL); None:
    the model's default. The adapters fold it into the model spec (patches and LLM tokens per image)."""
    grad_ckpt: GradCkpt = GradCkpt.FULL
    attention: Attention = Attention.FLASH
    loss: Loss = Loss.STANDARD

    def __post_init__(self) -> None:
        for name in ("micro_batch", "grad_accum", "seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ScenarioError(f"train.{name}", value, "must be a whole number >= 1")
        if self.images_per_sample < 0:
            raise ScenarioError("train.images_per_sample", self.images_per_sample, "must be >= 0")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ScenarioError("train.image_size", self.image_size, "must be [width, height] in pixels", "e.g. [1120, 896]")

    @property
    def tokens_per_micro_batch(self) -> int:
        """Tokens one rank processes per forward pass."""
        return self.micro_batch * self.seq_len

    @property
    def fp32_params(self) -> bool:
        """Whether trainable weights are held in fp32 outside DeepSpeed (fp32, or autocast mixed precision)."""
        return self.precision in (Precision.FP32, Precision.BF16_MIXED, Precision.FP16_MIXED)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeepSpeedKnobs:
    """DeepSpeed settings that move memory. ``None`` means "auto" as HF Trainer fills it."""

    reduce_bucket_size: int | None = None
    """Elements; auto = hidden_size^2 (transformers integrations/deepspeed.py)."""
    allgather_bucket_size: int = 500_000_000
    overlap_comm: bool | None = None
    """None: DeepSpeed's default (True for stage 3, False for 1/2)."""
    contiguous_gradients: bool = True
    stage3_prefetch_bucket_size: int | None = None
    """Elements; auto = 0.9 * hidden_size^2."""
    stage3_param_persistence_threshold: int | None = None
    """Elements; auto = 10 * hidden_size."""
    stage3_max_live_parameters: int = 1_000_000_000
    stage3_max_reuse_distance: int = 1_000_000_000
    sub_group_size: int = 1_000_000_000
    moe_leaf_modules: bool = True
    """``set_z3_leaf_modules`` called for the MoE block class (MGM does; HF Trainer alone does not)."""
    zero_init: bool = True
    """ZeRO-3 ``zero.Init`` active at load (HF does this when TrainingArguments gets the config first)."""
    pin_memory: bool = True
    grad_accum_dtype: str | None = None
    """``data_types.grad_accum_dtype`` ("fp32", "bf16", "fp16"); None = the model dtype, as DeepSpeed's
    ``get_data_types`` defaults it since PR #7515 ("Enable non-ZeRO mode", merged 2025-08; the installed 0.19.8
    does). Only moves memory at ZeRO-0 with bf16: None/"bf16" -> ``DDP_BFLOAT16`` (FP16_Optimizer with bf16:
    unpartitioned fp32 master and states), "fp32" -> ``BF16_Optimizer`` (fp32 gradient buffer, partitioned
    master and states: DeepSpeed before #7515, or pipeline parallelism; 0.19.8 rejects it without PP)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParallelSpec:
    """Engine and parallel degrees."""

    engine: Engine = Engine.DEEPSPEED
    zero: int = 2
    offload_optimizer: Offload = Offload.NONE
    offload_param: Offload = Offload.NONE
    tp: int = 1
    pp: int = 1
    ep: int = 1
    deepspeed: DeepSpeedKnobs = field(default_factory=DeepSpeedKnobs)
    fsdp_sharding: FsdpSharding = FsdpSharding.FULL_SHARD
    expandable_segments: bool = False
    """``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` (less fragmentation)."""

    def __post_init__(self) -> None:
        if self.zero not in (0, 1, 2, 3):
            raise ScenarioError("parallel.zero", self.zero, "must be 0, 1, 2 or 3")
        for name in ("tp", "pp", "ep"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ScenarioError(f"parallel.{name}", value, "must be a whole number >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Everything one estimate needs."""

    model: ModelSpec
    train: TrainSpec
    cluster: ClusterSpec
    parallel: ParallelSpec
    headroom_fraction: float = 0.03
    """Part of the GPU kept free; at least ``min_headroom_bytes`` (engine-internals.md §8: 3-5 % or >= 0.5 GiB)."""
    min_headroom_bytes: int = 512 * 1024**2
    activation_profile: ActivationProfile | None = None
    """Measured per-token layer activations (``vramplan calibrate``) replacing the formulas; None: formulas."""

    def __post_init__(self) -> None:
        world = self.cluster.world_size
        par = self.parallel
        if par.engine is Engine.SINGLE and world != 1:
            raise ScenarioError(
                "parallel.engine", par.engine.value, f"is for one GPU but hardware has {world}", "use ddp, deepspeed or fsdp"
            )
        model_parallel = par.tp * par.pp
        if world % model_parallel:
            raise ScenarioError(
                "parallel.tp", par.tp, f"tp({par.tp}) * pp({par.pp}) must divide world size {world}",
                "pick degrees whose product divides the GPU count",
            )
        dec = self.model.decoder
        if dec.attention.num_heads % par.tp or (dec.attention.mla is None and dec.attention.num_kv_heads % par.tp):
            raise ScenarioError(
                "parallel.tp", par.tp,
                f"must divide num_attention_heads={dec.attention.num_heads} and "
                f"num_key_value_heads={dec.attention.num_kv_heads}",
                "use a power of two no larger than the kv head count",
            )
        if par.pp > dec.num_layers:
            raise ScenarioError("parallel.pp", par.pp, f"exceeds num_layers={dec.num_layers}")
        if par.ep > 1:
            if dec.moe is None:
                raise ScenarioError("parallel.ep", par.ep, "expert parallelism needs an MoE model", "set ep: 1")
            if dec.moe.num_experts % par.ep:
                raise ScenarioError(
                    "parallel.ep", par.ep, f"must divide num_experts={dec.moe.num_experts}", "pick a divisor"
                )
            if (world // model_parallel) % par.ep:
                raise ScenarioError("parallel.ep", par.ep, f"must divide the data-parallel degree {world // model_parallel}")
        if not 0.0 <= self.headroom_fraction < 0.5:
            raise ScenarioError("headroom", self.headroom_fraction, "must be a fraction in [0, 0.5)")
        if self.train.method in (Method.LORA, Method.QLORA) and not self.lora_linear_names():
            raise ScenarioError(
                "train.lora.targets", list(self.train.lora.targets), "match no linear layer of this model",
                "use names like q_proj, v_proj or all-linear",
            )

    @property
    def dp_degree(self) -> int:
        """Data-parallel degree: ranks that hold the same model-parallel slice."""
        return self.cluster.world_size // (self.parallel.tp * self.parallel.pp)

    def lora_linear_names(self) -> set[str]:
        """Decoder linear names that LoRA adapts under ``train.lora.targets``."""
        dec = self.model.decoder
        linears = [lin for index in {0, *dec.moe_layers[:1]} for lin in dec.layer_linears(index)]
        own = {lin.name for lin in linears} | {lin.name.split(".")[-1] for lin in linears}
        asked = set(self.train.lora.targets)
        targets = {t if t in own else LORA_TARGET_ALIASES.get(t, t) for t in asked}
        default = asked == set(DEFAULT_LORA_TARGETS)
        names: set[str] = set()
        for lin in linears:
            short = lin.name.split(".")[-1]
            if lin.name.startswith("experts."):
                # fused 3-D expert parameters (GPT-OSS, Granite-MoE, Phi-3.5-MoE): no nn.Linear for PEFT to wrap
                if lin.name in targets:
                    names.add(lin.name)
            elif "all-linear" in targets or "all_linear" in targets or short in targets or lin.name in targets:
                names.add(lin.name)
            elif default and not lin.expert and lin.name not in ("gate", "shared_expert_gate"):
                names.add(lin.name)  # the default's Llama names stand for the family's own (DEFAULT_LORA_TARGETS)
        return names

    def trains(self, part: Part) -> bool:
        """Whether ``part``'s own weights get gradients (LoRA: the LLM base does not)."""
        if self.train.method in (Method.LORA, Method.QLORA):
            return part is not Part.LLM and part in self.train.trainable
        return part in self.train.trainable
