"""Runtime memory: monitor a real training run, detect leaks, record OOMs, probe the largest micro-batch.

Public names::

    from vramplan.monitor import MemoryMonitor            # context manager for any loop
    from vramplan.monitor.hf_callback import VramplanCallback                # transformers Trainer
    from vramplan.monitor.lightning import VramplanLightningCallback         # Lightning

Importing this package imports neither torch nor transformers nor Lightning; they are imported by
the sources and integrations that need them. See docs/runtime.md.
"""

from .leaks import leak_verdict, new_allocation_sites
from .hooks import is_oom
from .monitor import MemoryMonitor
from .oom import FlightRecorder, attribute_snapshot, parse_oom_message
from .sources import CallableSource, CudaSource, FakeSource, MallocSource, MemorySource, RssSource, Sample, default_source

__all__ = [
    "CallableSource",
    "CudaSource",
    "FakeSource",
    "FlightRecorder",
    "MallocSource",
    "MemoryMonitor",
    "MemorySource",
    "RssSource",
    "Sample",
    "attribute_snapshot",
    "default_source",
    "is_oom",
    "leak_verdict",
    "new_allocation_sites",
    "parse_oom_message",
]
