"""The rule registry: ``@rule(...)`` turns a check function into a ``Rule`` and records it in ``RULES``.

A check function takes ``(ctx, rule)`` and returns ``rule.finding(...)`` or None. Rules are pure.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.units import GiB
from .types import DoctorContext, Finding, Rule, Severity

RULES: list[Rule] = []

CheckFn = Callable[[DoctorContext, Rule], "Finding | None"]


def rule(rule_id: str, severity: Severity, title: str, explanation: str, *evidence: str) -> Callable[[CheckFn], CheckFn]:
    """Register a rule; ids are unique."""

    def deco(fn: CheckFn) -> CheckFn:
        if any(r.id == rule_id for r in RULES):
            raise ValueError(f"duplicate rule id {rule_id}")
        holder: dict[str, Rule] = {}

        def check(ctx: DoctorContext) -> Finding | None:
            return fn(ctx, holder["rule"])

        holder["rule"] = Rule(id=rule_id, severity=severity, title=title, explanation=explanation,
                              evidence=tuple(evidence), check=check)
        RULES.append(holder["rule"])
        return fn

    return deco


def gib(value: int) -> str:
    """Bytes as ``12.3 GiB`` inside a finding's text (the report layer formats everything else)."""
    return f"{value / GiB:.2f} GiB"
