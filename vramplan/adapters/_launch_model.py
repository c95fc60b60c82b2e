"""Which vramplan model a launch script trains, from ``--model_name_or_path`` and the vision-tower flags.

Owns the mapping from backbone names in a path (``model_zoo/LLM/gemma/gemma-2b-it``,
``lmsys/vicuna-7b-v1.5``, ``Mixtral-8x7B-Instruct-v0.1`` ...) plus the multimodal context to a preset:
an auxiliary vision tower (``--vision_tower_aux``) means MGM (``mgm-<size>``, ``-hd`` when
``--image_size_aux`` >= 1536 or ``--image_grid`` > 1; mgm.md §1.2), a single ``--vision_tower`` means
LLaVA-1.5, no tower means the plain LLM. A path that is itself a preset id/alias or holds a local
``config.json`` is used as is. Imports ``vramplan.registry`` for preset names only.
"""

from __future__ import annotations

import re
from pathlib import Path

# (backbone pattern, size key, mgm preset, llava preset, plain LLM preset)
_BACKBONES: tuple[tuple[re.Pattern[str], str, str | None, str | None, str | None], ...] = (
    (re.compile(r"mixtral.*8x7b|8x7b"), "8x7b", "mgm-8x7b", None, "mixtral-8x7b"),
    (re.compile(r"gemma.*2b|2b.*gemma"), "2b", "mgm-2b", None, "gemma-2b"),
    (re.compile(r"(vicuna|llama-?2).*13b|13b-v1\.5|vicuna.*13b|(^|/)llama-?13b"), "13b", "mgm-13b", "llava-1.5-13b",
     "llama-2-13b"),
    (re.compile(r"(vicuna|llama-?2).*7b|7b-v1\.5|(^|/)llama-?7b"), "7b", "mgm-7b", "llava-1.5-7b", "llama-2-7b"),
    (re.compile(r"llama-?3.*8b"), "8b", "mgm-8b", None, "llama-3.1-8b"),
    (re.compile(r"yi.*34b|hermes.*34b"), "34b", "mgm-34b", None, None),
    (re.compile(r"mistral.*7b"), "mistral-7b", None, None, "mistral-7b"),
    (re.compile(r"qwen2\.5.*72b"), "72b", None, None, "qwen2.5-72b"),
    (re.compile(r"qwen2\.5.*7b"), "q7b", None, None, "qwen2.5-7b"),
)

HD_IMAGE_SIZE_AUX = 1536
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""``owner/name`` as the Hub spells ids (a relative local folder of two parts looks the same; it is
reported as a Hub id only when no such folder with a config.json exists)."""


def _normalise(path: str) -> str:
    return path.strip().lower().replace("_", "-")


def model_from_path(
    path: str | None,
    *,
    vision_tower: str | None,
    vision_tower_aux: str | None,
    image_size_aux: int | None,
    image_grid: int | None,
    search_dirs: list[Path],
) -> tuple[str | None, str]:
    """(model reference or None, one line saying how it was chosen / why not)."""
    from ..registry import resolve_preset_id

    if not path:
        return None, "the script has no --model_name_or_path"
    if "$" in path or "`" in path:
        return None, f"--model_name_or_path {path} is not resolved (a shell parameter)"
    if path.strip().startswith("<") and path.strip().endswith(">"):
        return None, f"--model_name_or_path {path} is a placeholder the script leaves for you to fill in"
    text = _normalise(path)
    hd = (image_size_aux or 0) >= HD_IMAGE_SIZE_AUX or (image_grid or 1) > 1
    for pattern, _size, mgm, llava, plain in _BACKBONES:
        if not pattern.search(text):
            continue
        if vision_tower_aux and mgm:
            ref = mgm + ("-hd" if hd else "")
            why = f"MGM vision towers (--vision_tower_aux{', image_size_aux ' + str(image_size_aux) if image_size_aux else ''})"
            return ref, f"{ref} (from --model_name_or_path {path} with {why})"
        if vision_tower and not vision_tower_aux and llava:
            return llava, f"{llava} (from --model_name_or_path {path} with --vision_tower: LLaVA-1.5)"
        if plain and not vision_tower and not vision_tower_aux:
            return plain, f"{plain} (from --model_name_or_path {path})"
        if plain:
            return plain, (f"{plain} (from --model_name_or_path {path}; no preset for this vision-language "
                           "combination, so the LLM alone is estimated: pass --model for the full model)")
    # the whole path, or its last one or two components, may name a preset or an HF id
    parts = [p for p in path.strip("/").split("/") if p]
    for candidate in (path, "/".join(parts[-2:]), parts[-1] if parts else ""):
        preset = resolve_preset_id(candidate) if candidate else None
        if preset:
            return preset, f"{preset} (--model_name_or_path {path} names a preset)"
    for base in search_dirs:
        folder = Path(path) if Path(path).is_absolute() else base / path
        if (folder / "config.json").is_file():
            return str(folder / "config.json"), f"{folder / 'config.json'} (local config of --model_name_or_path)"
        if folder.is_file() and folder.suffix == ".json":
            return str(folder), f"{folder} (local config given as --model_name_or_path)"
    if _HUB_ID.match(path.strip()) and not path.strip().startswith("."):
        return None, (f"--model_name_or_path {path} is a Hugging Face id with no built-in preset (vramplan models "
                      f"lists them); pass --model {path.strip()} to read its config.json from the Hub (needs "
                      "pip install 'vramplan[hf]' and network), or --model PRESET, or --model path/to/config.json")
    return None, (f"--model_name_or_path {path} names no known preset and no local config.json was found "
                  f"(looked in {', '.join(str(d) for d in search_dirs) or 'the current folder'})")
