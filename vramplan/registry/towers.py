"""Vision tower configs shipped in ``vramplan/registry/towers/*.json`` and their lookup by reference.

Owns matching a tower reference as VLM configs write it (``openai/clip-vit-large-patch14-336``,
``model_zoo/OpenAI/clip-vit-large-patch14-336``, ``openclip-convnext-large-d-320-laion2B-s29B-b131K-ft-soup``)
to a shipped file. Imports only the standard library and ``vramplan.core`` (via ``_data``).
"""

from __future__ import annotations

from typing import Any

from ._data import list_json, name_key, read_json


def tower_ids() -> list[str]:
    """Ids (file stems) of the shipped tower configs."""
    return [name[: -len(".json")] for name in list_json("towers")]


def _match_keys(tower_id: str) -> list[str]:
    """The id itself and the id without its vendor prefix (``openai-``, ``openclip-``, ``google-``)."""
    keys = [name_key(tower_id)]
    if "-" in tower_id:
        keys.append(name_key(tower_id.split("-", 1)[1]))
    return keys


def find_tower_config(ref: str) -> dict[str, Any] | None:
    """The shipped config of the tower ``ref`` names, or None.

    A tower matches when its id (or the id without the vendor prefix) occurs in the reference's last
    path component, compared on letters, digits and dots only; the longest match wins, so
    ``clip-vit-large-patch14-336`` is never taken for ``clip-vit-large-patch14``.
    """
    base = name_key(ref.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1])
    best: tuple[int, str] | None = None
    for tower_id in tower_ids():
        for key in _match_keys(tower_id):
            if key and key in base and (best is None or len(key) > best[0]):
                best = (len(key), tower_id)
    if best is None:
        return None
    config = read_json("towers", best[1] + ".json")
    return {k: v for k, v in config.items() if not k.startswith("_")}
