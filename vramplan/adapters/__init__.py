"""Adapters: third-party formats -> vramplan core types (and back).

``hf_config`` turns a Hugging Face ``config.json`` dict into a ``ModelSpec``; ``hf_vision`` parses vision
tower configs. Adapters import ``vramplan.core`` (and read ``vramplan.registry`` data); the core never
imports them. No module here imports torch or transformers at module level.
"""

from .hf_config import model_from_config, supported_model_types
from .hf_vision import tower_from_config

__all__ = ["model_from_config", "supported_model_types", "tower_from_config"]
