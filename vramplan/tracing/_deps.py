"""The optional-dependency guard of the tracer: import torch/transformers or say exactly what to install.

Owns ``require_torch`` and the install line. Imports nothing from vramplan but ``core.errors``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..core.errors import VramplanError

INSTALL_LINE = 'pip install "vramplan[torch]"'
TORCH_VERSION = "2.13.0"
"""The torch release the tracer is written and cross-validated against (the pinned CPU wheel)."""


class TracingUnavailable(VramplanError):
    """torch or transformers is missing (or too old) for ``--estimator trace``."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise ``TracingUnavailable`` with the install line."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TracingUnavailable(
            f"the trace estimator needs {module.split('.')[0]} (not importable: {exc}); install it with: {INSTALL_LINE}"
        ) from None


def require_torch() -> tuple[ModuleType, ModuleType]:
    """(torch, transformers), both importable, torch with FakeTensorMode; else ``TracingUnavailable``."""
    torch = require("torch")
    transformers = require("transformers")
    if not hasattr(torch, "_subclasses") or not hasattr(torch.utils, "_python_dispatch"):
        raise TracingUnavailable(f"torch {torch.__version__} has no FakeTensorMode; install it with: {INSTALL_LINE}")
    major = str(getattr(transformers, "__version__", "0")).split(".")[0]
    if not major.isdigit() or int(major) < 5:
        raise TracingUnavailable(f"the trace estimator needs transformers >= 5 (found {transformers.__version__}); "
                                 f"install it with: {INSTALL_LINE}")
    return torch, transformers


def require_peft() -> ModuleType:
    """peft, for LoRA/QLoRA scenarios."""
    return require("peft")
