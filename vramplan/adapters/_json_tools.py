"""JSON helpers for the adapters: reading a file with file:line:col errors, typed look-ups, dotted keys.

Imports only the standard library and ``vramplan.core.errors``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.errors import ScenarioError, VramplanError

INT_KEYS = (
    "reduce_bucket_size", "allgather_bucket_size", "stage3_prefetch_bucket_size",
    "stage3_param_persistence_threshold", "stage3_max_live_parameters", "stage3_max_reuse_distance",
    "sub_group_size", "stage3_model_persistence_threshold",
)
"""zero_optimization keys DeepSpeed types as int (pydantic v2 rejects fractional floats, DeepSpeed PR #5167)."""


def read_json_file(path: str | Path, what: str = "DeepSpeed config") -> Any:
    """Parse a JSON file; errors name the file, line and column (``zero2.json:7:5: invalid JSON: ...``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VramplanError(f"{p}: {what} not found; check the path (relative paths start at the script's folder)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise VramplanError(f"{p}: cannot read the {what} ({reason}); check the path and permissions") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VramplanError(f"{p}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "auto"


class Reader:
    """Typed look-ups in one config with errors naming the file and the dotted key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.fractional: list[tuple[str, float]] = []

    def _err(self, key: str, value: Any, problem: str, fix: str = "") -> ScenarioError:
        return ScenarioError(f"{self.source}: {key}", value, problem, fix)

    def number(self, section: Mapping[str, Any], key: str, dotted: str, default: int | None) -> int | None:
        value = section.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self._err(dotted, value, "must be a number", "write e.g. 5e8 or \"auto\"")
        try:
            number = float(value) if not isinstance(value, (int, float)) else value
        except ValueError:
            raise self._err(dotted, value, "is not a number", "write e.g. 5e8 or \"auto\"") from None
        if isinstance(number, float) and number != int(number) and key in INT_KEYS:
            self.fractional.append((dotted, float(number)))
        return int(number)

    def flag(self, section: Mapping[str, Any], key: str, dotted: str, default: bool) -> bool:
        value = section.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise self._err(dotted, value, "must be true or false")

    def device(self, section: Mapping[str, Any], dotted: str) -> str:
        value = section.get("device", "none")
        text = "none" if value is None else str(value).strip().lower()
        if text not in ("none", "cpu", "nvme"):
            raise self._err(f"{dotted}.device", value, "unknown offload device", "use none, cpu or nvme")
        return text


def section(cfg: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = cfg.get(key) or {}
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{source}: {key}", value, "must be a JSON object")
    return value


def collect_auto(node: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            out += collect_auto(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
    elif is_auto(node):
        out.append(prefix)
    return out


def set_dotted(config: dict[str, Any], dotted: str, value: Any, remove: bool = False) -> None:
    """Set (or remove) ``a.b.c`` in a nested dict, creating sections as needed."""
    parts = dotted.split(".")
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            if remove:
                return
            child = {}
            node[part] = child
        node = child
    if remove:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
