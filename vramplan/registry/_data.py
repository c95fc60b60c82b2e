"""Reading the JSON files shipped in ``vramplan/registry`` (package data, so it works from a wheel).

Owns file access for the registry: ``importlib.resources`` paths, JSON decoding and the error raised
when a data file is missing or broken. Imports only the standard library and ``vramplan.core``.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from ..core.errors import VramplanError


def data_path(*parts: str) -> Traversable:
    """The packaged file ``vramplan/registry/<parts...>``."""
    node = resources.files("vramplan.registry")
    for part in parts:
        node = node.joinpath(part)
    return node


@cache
def read_json(*parts: str) -> Any:
    """Decoded JSON of a packaged registry file (cached; callers must not mutate the result)."""
    node = data_path(*parts)
    try:
        text = node.read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise VramplanError(f"registry file {'/'.join(parts)} is missing from the installed package "
                            f"({exc}); reinstall vramplan") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VramplanError(f"registry file {'/'.join(parts)} is not valid JSON: {exc}") from exc


def list_json(folder: str) -> list[str]:
    """Names of the ``*.json`` files in a packaged registry folder (sorted)."""
    node = data_path(folder)
    if not node.is_dir():
        return []
    return sorted(child.name for child in node.iterdir() if child.name.endswith(".json"))


def name_key(text: str) -> str:
    """Lookup key of a user-typed name: lowercase, only letters, digits and dots."""
    return re.sub(r"[^a-z0-9.]+", "", text.lower())
