"""Model presets (``vramplan/registry/models/index.json`` + one pinned ``config.json`` each) and model loading.

Owns preset metadata (``PresetInfo``), name lookup (ids, HF ids, display names, ``Mini-Gemini-*``
aliases; case-insensitive, with close-match suggestions) and ``load_model``, which accepts a preset, a
local ``config.json`` (or its folder) or a Hugging Face Hub id. The Hub is reached only through the
optional ``huggingface_hub`` package and only ``config.json`` is downloaded: no remote code runs.
Parsing is delegated to ``vramplan.adapters.hf_config`` (imported inside the functions that need it).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..core.errors import SpecError, UnknownNameError, VramplanError
from ..core.model import ModelSpec
from ._data import name_key, read_json


class HubError(VramplanError):
    """A Hugging Face Hub id could not be turned into a config (package missing, network, no such repo)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PresetInfo:
    """What the registry says about one preset."""

    id: str
    """Preset id as typed on the command line (``mgm-8x7b-hd``)."""
    display_name: str
    hf_id: str
    """Hugging Face repository of the model."""
    published_params: int | None
    """Parameter count the model's authors or its checkpoint publish."""
    published_params_precision: int
    """How far the published count may be from the exact one (0: exact)."""
    published_active_params: int | None
    """Published parameters per token (MoE), if any."""
    source: str
    """URL of the pinned config.json."""
    notes: str = ""


@lru_cache(maxsize=1)
def _index() -> dict[str, dict[str, Any]]:
    data = read_json("models", "index.json")
    presets = data.get("presets") if isinstance(data, dict) else None
    if not isinstance(presets, dict):
        raise VramplanError("registry file models/index.json has no 'presets' object; reinstall vramplan")
    return presets


def _info(preset_id: str, entry: dict[str, Any]) -> PresetInfo:
    return PresetInfo(
        id=preset_id, display_name=str(entry.get("display_name") or preset_id), hf_id=str(entry.get("hf_id") or ""),
        published_params=entry.get("published_params"),
        published_params_precision=int(entry.get("published_params_precision") or 0),
        published_active_params=entry.get("published_active_params"), source=str(entry.get("source") or ""),
        notes=str(entry.get("notes") or ""),
    )


def list_presets() -> list[PresetInfo]:
    """Every preset, in index order."""
    return [_info(pid, entry) for pid, entry in _index().items()]


def _aliases(preset_id: str, entry: dict[str, Any]) -> set[str]:
    names = {preset_id, str(entry.get("display_name") or "")}
    hf_id = str(entry.get("hf_id") or "")
    if hf_id:
        names |= {hf_id, hf_id.rsplit("/", 1)[-1]}
    if preset_id.startswith("mgm-"):
        names |= {"mini-gemini-" + preset_id[4:], "minigemini-" + preset_id[4:]}
    return {name_key(n) for n in names if n}


@lru_cache(maxsize=1)
def _alias_table() -> dict[str, str]:
    table: dict[str, str] = {}
    clashes: set[str] = set()
    for pid, entry in _index().items():
        for alias in _aliases(pid, entry):
            if alias in table and table[alias] != pid:
                clashes.add(alias)
            table.setdefault(alias, pid)
    for pid in _index():  # a preset's own id always wins
        table[name_key(pid)] = pid
        clashes.discard(name_key(pid))
    return {k: v for k, v in table.items() if k not in clashes}


def resolve_preset_id(name: str) -> str | None:
    """The preset id ``name`` refers to, or None."""
    return _alias_table().get(name_key(name))


def _unknown_preset(name: str) -> UnknownNameError:
    ids = list(_index())
    close = difflib.get_close_matches(name.lower(), ids, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return UnknownNameError(f"unknown model {name!r}; {hint}use a preset ({', '.join(ids)}), a path to a "
                            "config.json or a Hugging Face id (owner/name)")


def preset_info(name: str) -> PresetInfo:
    """Metadata of preset ``name`` (id or alias, case-insensitive); ``UnknownNameError`` otherwise."""
    pid = resolve_preset_id(name)
    if pid is None:
        raise _unknown_preset(name)
    return _info(pid, _index()[pid])


def load_preset(name: str) -> ModelSpec:
    """The ``ModelSpec`` of preset ``name`` (id or alias, case-insensitive)."""
    from ..adapters.hf_config import model_from_config

    info = preset_info(name)
    config = read_json("models", str(_index()[info.id]["file"]))
    return model_from_config(config, name=info.id, source=info.source)


def _read_config_file(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpecError(f"model={str(path)!r}: file not found; pass a config.json or the folder holding it") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise SpecError(f"model={str(path)!r}: cannot read it as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SpecError(f"model={str(path)!r}: a config.json must hold a JSON object")
    return data


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _download_config(repo_id: str) -> dict[str, Any]:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise HubError(f"model={repo_id!r} looks like a Hugging Face Hub id, but huggingface_hub is not installed; "
                       "run: pip install 'vramplan[hf]' (or download its config.json and pass the path)") from exc
    offline = _hub_unreachable()
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its retry warnings would bury our one-line error
    try:
        local = hf_hub_download(repo_id=repo_id, filename="config.json", local_files_only=offline is not None)
    except Exception as exc:  # network, 404, gated repo: all reported the same way
        why = (f"the Hub is unreachable ({offline}) and the config is not in the local cache" if offline
               else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise HubError(f"model={repo_id!r}: could not download config.json from the Hugging Face Hub ({why}); "
                       "check the id and the network (gated repos need `huggingface-cli login`), or pass a local "
                       "config.json") from exc
    finally:
        hub_log.setLevel(level)
    return _read_config_file(Path(local))


def _hub_unreachable() -> str | None:
    """Why the Hub cannot be reached (its host does not resolve; ``HF_HUB_OFFLINE`` set), or None.

    Checked first so that a machine without network fails in milliseconds instead of after
    huggingface_hub's five retries with backoff (about 23 s), and still finds a config in the local cache."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    return None


def load_config(ref: str, *, image_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The Hugging Face ``config.json`` dict behind a model reference (preset, local path or Hub id), resolved
    as ``load_model`` resolves it; the tracer and the probe build the real model from it. ``image_size`` (the
    scenario's ``train.image_size``) is folded in for a dynamic-resolution vision tower
    (``adapters.hf_vlm.with_image_size``)."""
    from ..adapters.hf_vlm import with_image_size

    if resolve_preset_id(ref) is not None:
        config = dict(read_json("models", str(_index()[preset_info(ref).id]["file"])))
    else:
        path = Path(os.path.expanduser(ref))
        if path.exists() or ref.endswith(".json"):
            config = _read_config_file(path)
        elif _HUB_ID.match(ref):
            config = _download_config(ref)
        else:
            raise _unknown_preset(ref)
    return with_image_size(config, image_size)


def load_model(ref: str, *, image_size: tuple[int, int] | None = None) -> ModelSpec:
    """A ``ModelSpec`` from a preset name, a local ``config.json`` (or its folder) or a Hub id ``owner/name``.

    Presets win over paths, paths over Hub ids. Only ``config.json`` is read; remote code is never run.
    ``image_size`` (the scenario's ``train.image_size``) sizes a dynamic-resolution vision tower.
    """
    from ..adapters.hf_config import model_from_config

    if resolve_preset_id(ref) is not None and image_size is None:
        return load_preset(ref)
    config = load_config(ref, image_size=image_size)
    if resolve_preset_id(ref) is not None:
        info = preset_info(ref)
        return model_from_config(config, name=info.id, source=info.source)
    path = Path(os.path.expanduser(ref))
    if path.exists() or ref.endswith(".json"):
        label = path.parent.name if path.name == "config.json" else path.stem if path.is_file() else path.name
        return model_from_config(config, name=label or "custom", source=str(path))
    return model_from_config(config, name=ref, source=f"https://huggingface.co/{ref}")
