"""Types the doctor works with: the context rules read, findings, structured fixes, rules.

A ``Change`` is one edit of the user's setup, addressed where it is made: a dotted key of the DeepSpeed
JSON (``ds_config``), a training flag of the launch command (``script``, name without dashes), an
environment variable (``env``), or something only the user can do (``code``/``hardware``, described,
never applied). ``fixfiles`` applies ``ds_config``/``script``/``env`` changes to copies of the files.
Pure: no IO, no printing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..adapters.deepspeed_config import DeepSpeedSettings
from ..adapters.launch_script import LaunchSpec
from ..core.estimate import Estimate
from ..core.scenario import Scenario


class Severity(str, Enum):
    """How bad a finding is: ``error`` fails or runs out of memory, ``warning`` likely hurts, ``info`` worth knowing."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


TARGETS = ("ds_config", "script", "env", "code", "hardware")


@dataclass(frozen=True, slots=True)
class Change:
    """One edit (module docstring)."""

    target: str
    key: str
    value: Any = None
    remove: bool = False

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"Change.target={self.target!r} must be one of {TARGETS}")

    def describe(self) -> str:
        """One line, as the user would type it."""
        if self.target == "ds_config":
            return f"remove {self.key} from the DeepSpeed JSON" if self.remove else f"DeepSpeed JSON: {self.key} = {_json(self.value)}"
        if self.target == "script":
            return f"remove --{self.key}" if self.remove else f"--{self.key} {self.value}"
        if self.target == "env":
            return f"unset {self.key}" if self.remove else f"export {self.key}={self.value}"
        return str(self.value if self.value is not None else self.key)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"target": self.target, "key": self.key, "value": self.value, "remove": self.remove}


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


@dataclass(frozen=True, slots=True)
class Fix:
    """A named set of changes."""

    title: str
    changes: tuple[Change, ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"title": self.title, "changes": [c.as_dict() for c in self.changes], "note": self.note}


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorContext:
    """Everything a rule may look at; built by ``diagnose.build_context``."""

    scenario: Scenario
    estimate: Estimate
    launch: LaunchSpec | None = None
    ds: DeepSpeedSettings | None = None
    model_ref: str = ""
    model_how: str = ""
    host_ram_bytes: int = 0
    """Host RAM per node the estimate was checked against (given, or assumed)."""
    host_ram_assumed: bool = False
    notes: tuple[str, ...] = ()

    @property
    def zero_stage(self) -> int | None:
        """ZeRO stage when DeepSpeed is used."""
        return self.ds.zero_stage if self.ds is not None else None

    @property
    def world(self) -> int:
        """Ranks in the run."""
        return self.scenario.cluster.world_size

    @property
    def env(self) -> dict[str, str]:
        """Environment of the launch command."""
        return dict(self.launch.env) if self.launch is not None else {}

    def flag(self, name: str) -> str | None:
        """A training flag of the launch command."""
        return self.launch.flag(name) if self.launch is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A rule that fired, with numbers for this setup."""

    rule_id: str
    severity: Severity
    title: str
    explanation: str
    evidence: tuple[str, ...]
    fix: Fix | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.rule_id, "severity": self.severity.value, "title": self.title,
            "explanation": self.explanation, "evidence": list(self.evidence),
            "fix": self.fix.as_dict() if self.fix else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A static check with its evidence; ``check`` returns a ``Finding`` or None."""

    id: str
    severity: Severity
    title: str
    explanation: str
    evidence: tuple[str, ...]
    check: Callable[[DoctorContext], Finding | None] = field(compare=False, repr=False)

    def finding(self, explanation: str, fix: Fix | None = None, severity: Severity | None = None) -> Finding:
        """A finding of this rule with the specific explanation."""
        return Finding(rule_id=self.id, severity=severity or self.severity, title=self.title,
                       explanation=explanation, evidence=self.evidence, fix=fix)
