"""What every decoder family builder shares: the build result, sub-config defaults and the common config readers.

``_base`` (width, depth, vocabulary, heads), head_dim defaults, sliding windows, which layers hold the MoE
block, the llama-style dense layer ``_dense`` most families start from, and the activation-saving table of the
non-SiLU MLPs. Imports only ``vramplan.core`` and ``._config``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..core.errors import SpecError
from ..core.model import AttentionSpec, DecoderSpec, MoESpec
from ._config import Cfg


@dataclass(frozen=True, slots=True)
class DecoderBuild:
    """A parsed decoder and the transformers class names the estimator needs."""

    decoder: DecoderSpec
    decoder_layer_class: str
    moe_block_class: str = ""
    notes: tuple[str, ...] = ()


# Values transformers' config classes use when a key is absent. Applied only to nested sub-configs
# (llava-hf ``text_config`` is saved as a diff against LlamaConfig defaults); a top-level config must
# name its shape keys.
SUBCONFIG_DEFAULTS: dict[str, dict[str, object]] = {
    "llama": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
              "num_hidden_layers": 32, "num_attention_heads": 32},
    "mistral": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
                "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8},
    "qwen2": {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
              "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32},
}


def _base(c: Cfg) -> tuple[int, int, int, int, int, int]:
    """hidden, layers, vocab, heads, kv heads, intermediate (validated positive)."""
    c.positive("hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads")
    heads = c.integer("num_attention_heads")
    kv = c.integer("num_key_value_heads", default=heads)
    return (c.integer("hidden_size"), c.integer("num_hidden_layers"), c.integer("vocab_size"), heads, kv,
            c.integer("intermediate_size"))


def _head_dim(c: Cfg, hidden: int, heads: int, default: int | None = None) -> int:
    """``head_dim`` from the config; else the family default; else hidden // heads."""
    value = c.opt_int("head_dim")
    if value is not None:
        return value
    return default if default is not None else hidden // heads


def _sliding(c: Cfg, *, needs_flag: bool) -> int | None:
    """Sliding-window width (Qwen2/Qwen3 use it only with ``use_sliding_window``)."""
    if needs_flag and not c.flag("use_sliding_window", False):
        return None
    return c.opt_int("sliding_window")


def _moe_layers(c: Cfg, layers: int) -> tuple[int, ...]:
    """Qwen2-MoE / Qwen3-MoE rule (``Qwen2MoeDecoderLayer.__init__``): not in ``mlp_only_layers`` and
    ``(i + 1) % decoder_sparse_step == 0``."""
    step = c.integer("decoder_sparse_step", default=1)
    only_mlp = set(c.raw("mlp_only_layers", []) or [])
    if step < 1:
        raise SpecError(f"{c.path}.decoder_sparse_step={step} must be at least 1")
    return tuple(i for i in range(layers) if i not in only_mlp and (i + 1) % step == 0)


def _dense(c: Cfg, kind: str, *, qkv_bias: bool | None = None, o_bias: bool | None = None,
           head_dim_default: int | None = None, tie_default: bool = False, qk_norm: bool = False,
           norms: int = 2, fused: bool = False, sliding_flag: bool = False, mlp_bias: bool | None = None,
           qk_norm_full: bool = False, norm_layout: str = "pre", norm_kind: str = "rms",
           fused_gate_up: bool | None = None, softcap_default: float | None = None,
           kv_default: int | None = None) -> DecoderSpec:
    """Dense decoder shared by Llama-like families. ``qkv_bias``/``o_bias`` None: ``attention_bias``;
    ``mlp_bias`` None: the ``mlp_bias`` key for Llama-kind families, else False. ``qk_norm``: per-head q/k
    norms (2 head_dim weights); ``qk_norm_full``: q/k norms over all heads (q_dim + kv_dim weights, OLMo-2).
    ``softcap_default``: the family's ``final_logit_softcapping`` default (a null value turns it off)."""
    hidden, layers, vocab, heads, kv, inter = _base(c)
    if kv_default is not None and c.raw("num_key_value_heads") is None:
        kv = kv_default
    head_dim = _head_dim(c, hidden, heads, head_dim_default)
    attn_bias = c.flag("attention_bias", False)
    qk_numel = 2 * head_dim if qk_norm else (heads + kv) * head_dim if qk_norm_full else 0
    attention = AttentionSpec(
        num_heads=heads, num_kv_heads=kv, head_dim=head_dim,
        qkv_bias=attn_bias if qkv_bias is None else qkv_bias,
        o_bias=attn_bias if o_bias is None else o_bias,
        qk_norm_numel=qk_numel, fused_qkv=fused, sliding_window=_sliding(c, needs_flag=sliding_flag),
    )
    softcap = False
    if softcap_default is not None:
        softcap = c.data.get("final_logit_softcapping", softcap_default) is not None  # null: off
    elif c.data.get("final_logit_softcapping") is not None:
        softcap = True
    if mlp_bias is None:
        mlp_bias = c.flag("mlp_bias", False) if kind == "llama" else False
    return DecoderSpec(
        hidden_size=hidden, num_layers=layers, vocab_size=vocab, attention=attention,
        intermediate_size=inter, mlp_bias=mlp_bias,
        fused_gate_up=fused if fused_gate_up is None else fused_gate_up,
        tie_embeddings=c.flag("tie_word_embeddings", tie_default), norms_per_layer=norms,
        norm_layout=norm_layout, norm_kind=norm_kind, logit_softcap=softcap,
        max_position_embeddings=c.integer("max_position_embeddings", default=0),
    )


def _with_moe(d: DecoderSpec, moe: MoESpec, moe_layers: tuple[int, ...], *,
              attention: AttentionSpec | None = None) -> DecoderSpec:
    """``d`` with routed experts in ``moe_layers`` (none: stays dense)."""
    return replace(d, moe=moe if moe_layers else None, moe_layers=moe_layers, attention=attention or d.attention)


_ACT_SAVED: dict[str, tuple[int, tuple[int, int]]] = {"gelu_new": (4, (1, 3)), "relu2": (1, (1, 1))}
"""``hidden_act`` -> (``DecoderSpec.act_saved``, ``act_saved_autocast``) where its implementation saves more than
one tensor (transformers ``activations.py``: ``NewGELUActivation`` is written out in elementwise ops,
``ReLUSquaredActivation`` squares with ``torch.square``; GELU / GELU-tanh / SiLU are one kernel)."""


def _act_saved(c: Cfg, default: str) -> tuple[int, tuple[int, int]]:
    """``DecoderSpec.act_saved`` and ``act_saved_autocast`` for the config's ``hidden_act``."""
    return _ACT_SAVED.get(str(c.data.get("hidden_act", c.data.get("activation", default))), (1, (1, 0)))
