"""Without torch the trace estimator is one readable error line with the exact install command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_estimator_trace_without_torch_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "from vramplan.cli.main import main\n"
        "raise SystemExit(main(['estimate', 'llama-3.1-8b', '--estimator', 'trace']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert 'pip install "vramplan[torch]"' in result.stderr


def test_tracing_package_imports_without_torch() -> None:
    code = "import sys; sys.modules['torch'] = None\nimport vramplan.tracing, vramplan.tracing.compare\nprint('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
