"""A training script's own config file (LLaMA-Factory / alignment-handbook YAML, HF JSON) read as command-line flags.

HfArgumentParser reads a single ``.yaml``/``.json`` positional argument (or ``--config FILE`` in TRL-style
scripts) as the whole set of training arguments; ``launch_script`` merges these under the flags given on the
command line (the command line wins).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..core.errors import VramplanError

TRAINING_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
"""A training script's first positional argument with one of these suffixes is its config file
(HfArgumentParser ``parse_yaml_file``/``parse_json_file``: LLaMA-Factory, alignment-handbook, HF examples)."""

def _config_value_as_flag(value: object) -> str:
    """A YAML/JSON value as the string a command line would carry (``true`` -> ``True``, lists joined by ``,``)."""
    import json

    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value)
    return str(value)


def read_training_config(path: Path) -> dict[str, str]:
    """Flags from a training config file (flat YAML or JSON mapping, as HfArgumentParser reads it)."""
    import json

    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VramplanError(f"{path}: cannot read the training config ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise VramplanError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise VramplanError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise VramplanError(f"{path}: a training config must be a mapping of flag: value, got {type(data).__name__}")
    return {str(k).replace("-", "_"): _config_value_as_flag(v) for k, v in data.items() if v is not None}


def training_config_word(words: list[str]) -> tuple[str | None, list[str]]:
    """(config file named by the first positional word or ``--config FILE``, the other words)."""
    if words and not words[0].startswith("-") and words[0].lower().endswith(TRAINING_CONFIG_SUFFIXES):
        return words[0], words[1:]
    for k, word in enumerate(words):
        name, eq, value = word.partition("=")
        if name != "--config":
            continue
        if eq and value.lower().endswith(TRAINING_CONFIG_SUFFIXES):
            return value, words[:k] + words[k + 1:]
        if not eq and k + 1 < len(words) and words[k + 1].lower().endswith(TRAINING_CONFIG_SUFFIXES):
            return words[k + 1], words[:k] + words[k + 2:]
    return None, words
