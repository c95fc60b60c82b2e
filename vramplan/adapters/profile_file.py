"""Stored activation profiles (``vramplan calibrate``): where they live, their JSON form, and lookup.

A profile is one JSON file per (model reference, precision, attention, method) under the profile directory:
``--profile-dir``, else ``$VRAMPLAN_PROFILE_DIR``, else ``~/.cache/vramplan/profiles``. Scenario loading
(``scenario_file.scenario_from_dict``) attaches the matching profile, so that estimate, plan, doctor and the
web UI all use it. Imports only ``vramplan.core`` and the standard library.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..core.errors import VramplanError
from ..core.profile import ActivationProfile

PROFILE_DIR_ENV = "VRAMPLAN_PROFILE_DIR"
FORMAT_VERSION = 1


def profile_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The directory profiles are written to and read from (module docstring)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(PROFILE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vramplan" / "profiles"


def settings_key(precision: str, attention: str, method: str) -> str:
    """What a profile was measured under, as it appears in its file name."""
    return f"{precision}_{attention}_{method}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def profile_path(model_ref: str, settings: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """File of the profile of ``model_ref`` measured under ``settings`` (``settings_key``)."""
    return profile_dir(directory) / f"{_safe(model_ref)}__{_safe(settings)}.json"


def save_profile(profile: ActivationProfile, extra: dict[str, Any], directory: str | os.PathLike[str] | None = None) -> Path:
    """Write ``profile`` (plus provenance ``extra``) and return the file written."""
    path = profile_path(profile.model, profile.settings, directory)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT_VERSION, **asdict(profile), **extra}
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise VramplanError(f"cannot write the activation profile to {path} ({exc.strerror}); pass --profile-dir") from None
    return path


def read_profile(path: Path) -> ActivationProfile:
    """Parse one profile file; a bad file is a one-line ``VramplanError``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise VramplanError(f"{path}: not a readable activation profile ({exc}); delete it or re-run vramplan calibrate") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise VramplanError(f"{path}: unknown activation profile format; re-run vramplan calibrate")
    fields = {k: data[k] for k in ("model", "settings", "dense_saved_per_token", "dense_backward_per_token",
                                   "moe_saved_per_token", "moe_backward_per_token") if k in data}
    try:
        return ActivationProfile(**fields)
    except TypeError as exc:
        raise VramplanError(f"{path}: incomplete activation profile ({exc}); re-run vramplan calibrate") from None


def find_profile(model_ref: str, settings: str, directory: str | os.PathLike[str] | None = None) -> ActivationProfile | None:
    """The stored profile of ``model_ref`` under ``settings``, or None when there is none."""
    path = profile_path(model_ref, settings, directory)
    return read_profile(path) if path.is_file() else None
