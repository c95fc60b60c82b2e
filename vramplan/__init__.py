"""vramplan: will this fine-tuning run fit in GPU memory, why not, and what to change.

Public API::

    from vramplan import load_model, load_scenario, estimate, estimate_from_dict
"""

__version__ = "0.1.0"

from .api import estimate, estimate_from_dict, load_scenario  # noqa: E402
from .registry import load_model  # noqa: E402

__all__ = ["__version__", "estimate", "estimate_from_dict", "load_model", "load_scenario"]
