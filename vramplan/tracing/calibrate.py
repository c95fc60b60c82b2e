"""``vramplan calibrate``: learn a model's per-token activation bytes per decoder layer by tracing one or two layers.

Owns ``calibrate``. For each layer kind the model has (dense, MoE), the model is cut to one and to two
decoder layers of that kind (family keys: ``first_k_dense_replace`` for DeepSeek, ``mlp_only_layers`` for
Qwen-MoE; Mixtral/OLMoE layers are all MoE) and traced under the scenario's precision, attention, method,
micro-batch and sequence length, on one GPU:

Token counts: the scenario's sequence length at micro-batches of about 16k and 32k tokens (fake tensors cost
nothing per token), so that per-token terms dominate per-layer constants.

- saved per token = (activations alive when lm_head starts, 2 layers - 1 layer - autocast's weight copies of a
  layer) / tokens: exactly what one layer keeps for backward, everything else (embedding, final norm,
  inputs) cancelling out;
- backward per token = slope over the two micro-batches of the largest recompute + backward
  temporaries while the single checkpointed layer runs backward, minus saved per token: what a layer's
  backward holds on top of its saved tensors (the analytical model's ``backward_temp - backward_freed``);
  the slope removes per-layer constants (weight gradients before accumulation, weight copies).

The profile (``core/profile.py``) is stored with ``adapters/profile_file.py``; scenarios of the same model
and settings then use it in place of the formulas. Imports torch through ``.run``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from ..core.errors import VramplanError
from ..core.model import ModelSpec
from ..core.profile import ActivationProfile
from ..core.scenario import Engine, GradCkpt, Scenario
from ._deps import require_torch

DENSE, MOE = "dense", "moe"
CALIBRATION_TOKENS = 16384
"""Tokens of the smaller traced micro-batch (the larger has twice as many); fake tensors make size free."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """A measured profile and what the formulas say for the same layers (per token)."""

    profile: ActivationProfile
    formula: dict[str, tuple[int, int]]
    """kind -> (saved, backward) per token from ``core/memory/activations.py``."""
    traced_layers: int
    wall_seconds: float


def _with_layers(config: dict[str, Any], layers: int, kind: str, spec: ModelSpec) -> dict[str, Any]:
    """``config`` cut to ``layers`` decoder layers, all of ``kind`` where the family allows choosing."""
    out = copy.deepcopy(config)
    text = out.get("text_config") if isinstance(out.get("text_config"), dict) else out
    text["num_hidden_layers"] = layers
    if spec.decoder.moe is not None:
        if "first_k_dense_replace" in text:
            text["first_k_dense_replace"] = layers if kind == DENSE else 0
            text["moe_layer_freq"] = 1
        if "decoder_sparse_step" in text or "mlp_only_layers" in text:
            text["decoder_sparse_step"] = 1
            text["mlp_only_layers"] = list(range(layers)) if kind == DENSE else []
    return out


def _kinds(spec: ModelSpec) -> list[str]:
    dec = spec.decoder
    kinds = []
    if dec.moe is None or len(dec.moe_layers) < dec.num_layers:
        kinds.append(DENSE)
    if dec.moe is not None and dec.moe_layers:
        kinds.append(MOE)
    return kinds


def _single_gpu(scn: Scenario, spec: ModelSpec, grad_ckpt: GradCkpt, micro_batch: int) -> Scenario:
    from ..core.hardware import ClusterSpec

    train = dataclasses.replace(scn.train, grad_ckpt=grad_ckpt, grad_accum=1, micro_batch=micro_batch)
    parallel = dataclasses.replace(scn.parallel, engine=Engine.SINGLE, zero=0, tp=1, pp=1, ep=1)
    cluster = ClusterSpec(gpu=scn.cluster.gpu, gpus_per_node=1, nodes=1, host_ram_bytes=scn.cluster.host_ram_bytes)
    return dataclasses.replace(scn, model=spec, train=train, parallel=parallel, cluster=cluster, activation_profile=None)


def calibrate(scn: Scenario, config: dict[str, Any], model_ref: str, *, layers: int = 2,
              resolve_tower: Any = None) -> Calibration:
    """Measure the activation profile of ``scn``'s model (module docstring). ``layers`` 1 measures only the
    backward term and takes the saved bytes from the formula (cheaper), 2 measures both."""
    import time

    from ..adapters.hf_config import model_from_config
    from ..adapters.profile_file import settings_key
    from ..core.memory.activations import (
        autocast_weight_copy_bytes,
        decoder_layer_bytes_per_token,
        layer_backward_bytes_per_token,
        layer_flags,
    )
    from .run import trace_scenario

    require_torch()
    if layers not in (1, 2):
        raise VramplanError(f"--layers={layers}: calibrate traces 1 or 2 decoder layers")
    if scn.model.is_vlm:
        config = _text_config(config)
    start = time.perf_counter()
    # token counts where the per-token terms dominate the per-layer constants (weight gradients, copies);
    # the sequence length stays the scenario's (eager attention's bytes per token grow with it)
    seq = scn.train.seq_len
    small = max(1, -(-CALIBRATION_TOKENS // seq))
    large = 2 * small
    measured: dict[str, tuple[int, int]] = {}
    formula: dict[str, tuple[int, int]] = {}
    for kind in _kinds(scn.model):
        one_cfg = _with_layers(config, 1, kind, scn.model)
        one_spec = model_from_config(one_cfg, name=scn.model.name, resolve_tower=resolve_tower)
        base = _single_gpu(scn, one_spec, GradCkpt.NONE, large)
        flags = layer_flags(base)
        f_saved = decoder_layer_bytes_per_token(base, 0, flags)
        f_mlp, f_freed, _norm = layer_backward_bytes_per_token(base, 0, flags)
        formula[kind] = (f_saved, f_mlp - f_freed)
        two_cfg = _with_layers(config, 2, kind, scn.model)
        two_spec = model_from_config(two_cfg, name=scn.model.name, resolve_tower=resolve_tower)
        if layers == 2:
            a1 = _pre_logits(trace_scenario(base, one_cfg, resolve_tower=resolve_tower))
            a2 = _pre_logits(trace_scenario(_single_gpu(scn, two_spec, GradCkpt.NONE, large), two_cfg,
                                            resolve_tower=resolve_tower))
            # autocast's 16-bit weight copies are a per-layer constant the model adds on its own
            copies = autocast_weight_copy_bytes(base.model.decoder, 0, flags, 1)
            saved = max(0, (a2 - a1 - copies) // (large * seq))
        else:
            saved = f_saved
        # with two layers the bottom one gets its output gradient from a layer above, as in a deep stack
        spec_b, cfg_b = (two_spec, two_cfg) if layers == 2 else (one_spec, one_cfg)
        peaks = [trace_scenario(_single_gpu(scn, spec_b, GradCkpt.FULL, mb), cfg_b,
                                resolve_tower=resolve_tower).backward_layer_peak for mb in (small, large)]
        backward = max(0, (peaks[1] - peaks[0]) // ((large - small) * seq) - saved)
        measured[kind] = (saved, backward)
    settings = settings_key(scn.train.precision.value, scn.train.attention.value, scn.train.method.value)
    dense = measured.get(DENSE, (0, 0))
    moe = measured.get(MOE, (0, 0))
    profile = ActivationProfile(model=model_ref, settings=settings, dense_saved_per_token=dense[0],
                                dense_backward_per_token=dense[1], moe_saved_per_token=moe[0],
                                moe_backward_per_token=moe[1])
    return Calibration(profile, formula, layers, time.perf_counter() - start)


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """A VLM's decoder alone (the profile describes decoder layers)."""
    from ..adapters.hf_vlm import mgm_backbone

    if isinstance(config.get("text_config"), dict):
        text = dict(config["text_config"])
        text.setdefault("model_type", "llama")
        return text
    backbone = mgm_backbone(config)
    out = {k: v for k, v in config.items() if not k.startswith("mm_") and k not in ("image_grid", "image_global")}
    out["model_type"] = backbone or ("mistral" if config.get("model_type") == "llava_mistral" else "llama")
    return out


def _pre_logits(result: Any) -> int:
    """Decoder activations alive when lm_head starts (first step)."""
    return int(result.marks.get("pre_logits", 0))
