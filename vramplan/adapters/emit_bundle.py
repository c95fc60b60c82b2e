"""The files ``vramplan emit`` writes for one scenario, and writing them safely.

``render_bundle`` builds every file as text first (``scenario.yaml`` always; ``ds_config.json`` for
DeepSpeed, ``accelerate_config.yaml`` (+ ``accelerator_config.json`` with gradient accumulation) for
FSDP; ``launch.sh``). ``write_bundle`` writes them only after all were rendered, and refuses to
replace an existing file unless ``force`` is set. Nothing is written when anything fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from ..core.errors import VramplanError
from ..core.scenario import Engine, Scenario
from .accelerate_emit import emit_accelerate_config
from .deepspeed_emit import emit_deepspeed_config
from .launch_emit import (
    ACCELERATE_CONFIG_NAME,
    ACCELERATOR_CONFIG_NAME,
    DS_CONFIG_NAME,
    LAUNCH_NAME,
    SCENARIO_NAME,
    emit_launch_script,
    needs_accelerator_config,
)
from .scenario_file import scenario_to_dict


def render_bundle(
    scn: Scenario,
    model_ref: str,
    model_path: str,
    *,
    header: Sequence[str] = (),
    notes: Sequence[str] = (),
    out_dir: str | Path | None = None,
) -> dict[str, str]:
    """File name -> text for ``scn`` (module docstring). ``model_path`` goes to ``--model_name_or_path``;
    ``out_dir`` (where the files will be written) makes the launch script's config paths absolute."""
    files: dict[str, str] = {}
    files[SCENARIO_NAME] = (
        "# vramplan scenario: `vramplan estimate scenario.yaml` re-runs the estimate of these files.\n"
        + yaml.safe_dump(scenario_to_dict(scn, model_ref), sort_keys=False)
    )
    engine = scn.parallel.engine
    if engine is Engine.DEEPSPEED:
        files[DS_CONFIG_NAME] = json.dumps(emit_deepspeed_config(scn), indent=2) + "\n"
    if engine in (Engine.FSDP, Engine.FSDP2):
        files[ACCELERATE_CONFIG_NAME] = yaml.safe_dump(emit_accelerate_config(scn), sort_keys=False)
        if needs_accelerator_config(scn):
            files[ACCELERATOR_CONFIG_NAME] = json.dumps(
                {"gradient_accumulation_kwargs": {"sync_each_batch": True}}, indent=2) + "\n"
    files_dir = str(Path(out_dir).resolve()) if out_dir is not None else ""
    files[LAUNCH_NAME] = emit_launch_script(scn, model_path, header=header, notes=notes, files_dir=files_dir)
    return files


def write_bundle(files: Mapping[str, str], out_dir: str | Path, force: bool = False, flag: str = "--out") -> list[Path]:
    """Write ``files`` into ``out_dir`` (created if missing); existing files need ``force``.
    ``flag`` names the option that gave the directory in error messages."""
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise VramplanError(f"{flag} {root}: exists and is not a directory; choose another path")
    targets = [root / name for name in files]
    existing = [p.name for p in targets if p.exists()]
    if existing and not force:
        raise VramplanError(f"{flag} {root}: {', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                            "pass --force to overwrite "
                            "or choose another directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
        for path, text in zip(targets, files.values()):
            path.write_text(text, encoding="utf-8")
            if path.name == LAUNCH_NAME:
                os.chmod(path, 0o755)
    except OSError as exc:
        raise VramplanError(f"{flag} {root}: cannot write ({exc.strerror}); check the path and permissions") from None
    return targets
