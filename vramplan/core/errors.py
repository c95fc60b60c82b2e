"""Error types of the core. The CLI turns any ``VramplanError`` into one line on stderr and exit code 2."""

from __future__ import annotations


class VramplanError(Exception):
    """Base of every error a user can cause. The message names the field, the value and a fix."""


class SpecError(VramplanError):
    """A model, hardware or training specification is invalid."""


class ScenarioError(VramplanError):
    """A scenario (file or flags) has a bad field."""

    def __init__(self, field: str, value: object, problem: str, fix: str = "") -> None:
        self.field = field
        self.value = value
        text = f"{field}={value!r}: {problem}"
        if fix:
            text += f"; {fix}"
        super().__init__(text)


class UnknownNameError(VramplanError):
    """A preset, GPU or choice name that is not known."""
