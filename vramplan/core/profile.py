"""A measured activation profile: per-token bytes of one decoder layer that replace the formulas.

``vramplan calibrate`` traces one or two layers of a model (``vramplan.tracing.calibrate``) and stores what
a layer saves for backward and what its backward holds on top, per token, for dense and MoE layers. A
scenario that carries a profile (``Scenario.activation_profile``) uses those numbers in
``core/memory/activations.py`` instead of the per-architecture formulas; everything else (checkpointing,
logits, engines, parallelism) stays analytical. Pure: no IO (loading a profile file is the adapters' job).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SpecError


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationProfile:
    """Per-token activation bytes of one decoder layer, measured by tracing."""

    model: str
    """What was traced (preset name, config path or Hub id)."""
    settings: str
    """The training settings it was measured under (precision, attention, method), for display."""
    dense_saved_per_token: int = 0
    """Bytes a dense layer saves for backward, per token (0: no dense layer was traced)."""
    dense_backward_per_token: int = 0
    """Bytes a dense layer's backward holds on top of its saved tensors, per token."""
    moe_saved_per_token: int = 0
    moe_backward_per_token: int = 0

    def __post_init__(self) -> None:
        for name in ("dense_saved_per_token", "dense_backward_per_token", "moe_saved_per_token", "moe_backward_per_token"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise SpecError(f"activation profile {self.model!r}: {name}={value!r} must be a whole number >= 0")
        if not (self.dense_saved_per_token or self.moe_saved_per_token):
            raise SpecError(f"activation profile {self.model!r} holds no layer measurement")

    def layer_bytes(self, moe_layer: bool, saved: int, backward: int) -> tuple[int, int]:
        """(saved, backward) per token for a dense or MoE layer; the formula's values where nothing was measured."""
        if moe_layer and self.moe_saved_per_token:
            return self.moe_saved_per_token, self.moe_backward_per_token or backward
        if not moe_layer and self.dense_saved_per_token:
            return self.dense_saved_per_token, self.dense_backward_per_token or backward
        return saved, backward
