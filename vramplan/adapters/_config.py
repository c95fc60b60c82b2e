"""Read access to one ``config.json`` dict (or a nested ``text_config``/``vision_config``).

Owns: looking keys up with the error messages the adapters promise (a missing key names itself, with
the path of the sub-config it was looked for in), defaults that transformers applies to nested
sub-configs saved as diffs, and type checks on the values read. Imports only ``vramplan.core``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.errors import SpecError

_MISSING = object()


class Cfg:
    """A config dict plus where it came from (``config``, ``config.text_config`` ...)."""

    __slots__ = ("data", "defaults", "path")

    def __init__(self, data: Mapping[str, Any], path: str = "config",
                 defaults: Mapping[str, Any] | None = None) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{path} must be a JSON object (dict), got {type(data).__name__}")
        self.data = data
        self.path = path
        self.defaults: Mapping[str, Any] = defaults or {}

    def has(self, key: str) -> bool:
        """Whether ``key`` is set (not null) in the dict itself; defaults do not count."""
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (null counts as absent), else the family default, else ``default``."""
        value = self.data.get(key)
        if value is None:
            value = self.defaults.get(key, default)
        return value

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def req(self, *keys: str) -> Any:
        """The first of ``keys`` that is set; ``SpecError`` naming the key when none is."""
        for key in keys:
            value = self.raw(key, _MISSING)
            if value is not _MISSING and value is not None:
                return value
        names = " or ".join(repr(k) for k in keys)
        raise SpecError(
            f"{self.path}: required key {names} is missing; add it to the config.json "
            f"(copy it from the model's Hugging Face config)"
        )

    def integer(self, *keys: str, default: int | None = None) -> int:
        """An integer value: the first of ``keys`` that is set, else ``default``; ``SpecError`` when
        none is set and there is no default, or when the value is not an integer."""
        key = next((k for k in keys if self.raw(k) is not None), None)
        if key is None:
            if default is not None:
                return default
            self.req(*keys)  # raises, naming the keys
        value = self.raw(key) if key is not None else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise SpecError(f"{self._where(key or keys[0])}={value!r} must be an integer")
        return int(value)

    def opt_int(self, key: str) -> int | None:
        """An integer, or ``None`` when the key is absent or null."""
        value = self.raw(key)
        if value is None:
            return None
        return self.integer(key)

    def flag(self, key: str, default: bool) -> bool:
        """A boolean (absent or null: ``default``)."""
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise SpecError(f"{self._where(key)}={value!r} must be true or false")
        return value

    def text(self, key: str, default: str = "") -> str:
        """A string (absent or null: ``default``)."""
        value = self.raw(key, default)
        return str(value)

    def sub(self, key: str, defaults: Mapping[str, Any] | None = None) -> Cfg:
        """The nested config under ``key`` (``text_config``, ``vision_config``)."""
        value = self.req(key)
        return Cfg(value, self._where(key), defaults)

    def positive(self, *names: str) -> None:
        """Raise one ``SpecError`` listing every named integer that is not positive."""
        bad = [f"{self._where(n)}={self.raw(n)!r}" for n in names if not (self.integer(n) > 0)]
        if bad:
            raise SpecError("; ".join(bad) + " must be positive")
