"""All doctor rules, in report order, and ``run_rules``.

Rule ids: ``DS0xx`` DeepSpeed JSON, ``TR0xx`` training flags, ``HW0xx`` hardware and launcher. Each rule
has a severity, a title, a generic explanation, evidence links and a check returning a ``Finding``
with numbers for the setup and a structured ``Fix`` (see ``types.py``).
"""

from __future__ import annotations

from . import rules_deepspeed, rules_hardware, rules_training, rules_zero3  # noqa: F401  (registration)
from ._registry import RULES
from .types import DoctorContext, Finding, Rule, Severity

ALL_RULES: tuple[Rule, ...] = tuple(sorted(RULES, key=lambda r: (r.id[:2] != "DS", r.id[:2] != "TR", r.id)))
"""Every rule, DS first, then TR, then HW."""

_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def rule_by_id(rule_id: str) -> Rule:
    """The rule with this id (KeyError when unknown)."""
    for r in ALL_RULES:
        if r.id == rule_id:
            return r
    raise KeyError(rule_id)


def run_rules(ctx: DoctorContext, rules: tuple[Rule, ...] = ALL_RULES) -> list[Finding]:
    """Findings of every rule that fires, errors first."""
    findings = [f for f in (r.check(ctx) for r in rules) if f is not None]
    return sorted(findings, key=lambda f: (_ORDER[f.severity], f.rule_id))
