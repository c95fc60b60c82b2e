"""Writing command output: stdout, or a file written only after the work succeeded."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import VramplanError


def write_output(text: str, path: str | None) -> None:
    """Print ``text`` or write it to ``path`` (the directory must exist)."""
    if not path:
        sys.stdout.write(text + "\n")
        return
    target = Path(path)
    if not target.parent.exists():
        raise VramplanError(f"--output {path}: directory {target.parent} does not exist; create it first")
    target.write_text(text + "\n", encoding="utf-8")
    sys.stderr.write(f"wrote {target}\n")
