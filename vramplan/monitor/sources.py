"""Memory sources: where the monitor reads allocated, reserved, peak, device-used and host RSS bytes.

Owns the ``MemorySource`` interface and its implementations:

- ``CudaSource``: the CUDA caching allocator (``allocated``, ``reserved`` and their peaks, from one
  ``torch._C._cuda_memoryStats`` call), device memory used as nvidia-smi shows it (NVML through
  ``pynvml`` when installed, else ``cudaMemGetInfo``), and host RSS;
- ``MallocSource``: the CPU analogue on glibc (``mallinfo2``): bytes in use by ``malloc`` play
  ``allocated`` (torch CPU tensors are malloc'ed), bytes the heap holds from the OS play ``reserved``.
  Used when there is no GPU, and by the CPU tests of the leak detector;
- ``RssSource``: host RSS only (any Linux), the fallback when neither of the above works;
- ``CallableSource``: user-supplied function returning bytes (or a dict of fields);
- ``FakeSource``: a deterministic scripted source for unit tests.

``torch`` is imported only inside ``CudaSource``; ``pynvml`` only when NVML is asked for. Nothing
here raises while sampling: a field that cannot be read is ``None``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Iterable, Mapping

try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, OSError, ValueError):  # pragma: no cover - non-POSIX
    _PAGE_SIZE = 4096


@dataclass(slots=True)
class Sample:
    """One reading. Every value is int bytes or None when the source cannot tell."""

    allocated_bytes: int | None = None
    reserved_bytes: int | None = None
    peak_allocated_bytes: int | None = None
    """Highest ``allocated`` since the last ``reset_peak`` (the current value where not tracked)."""
    peak_reserved_bytes: int | None = None
    device_used_bytes: int | None = None
    """Whole-device memory in use as nvidia-smi shows it (all processes)."""
    host_rss_bytes: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        """Field name -> value."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


SAMPLE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Sample))


_STATM: dict[int, int] = {}
"""pid -> open descriptor of /proc/self/statm (re-read with pread: ~2 µs instead of ~20 µs for open+read)."""


def host_rss_bytes() -> int | None:
    """Resident set size of this process (``/proc/self/statm``; ``psutil`` elsewhere), or None."""
    pid = os.getpid()
    try:
        fd = _STATM.get(pid)
        if fd is None:
            fd = os.open("/proc/self/statm", os.O_RDONLY)
            _STATM.clear()  # a forked child must not reuse its parent's descriptor
            _STATM[pid] = fd
        return int(os.pread(fd, 128, 0).split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


class MemorySource:
    """Interface: ``read()`` a ``Sample``, ``reset_peak()``, ``capacity_bytes()`` and ``describe()``."""

    name = "abstract"
    tracks_peaks = False
    """Whether ``peak_*`` are true within-interval peaks (the allocator's) rather than boundary samples."""

    def read(self, rss: bool = True) -> Sample:
        """Current values; ``rss=False`` skips host RSS (a /proc read: 5-100 µs under load)."""
        raise NotImplementedError

    def reset_peak(self) -> None:
        """Start a new peak interval."""

    def capacity_bytes(self) -> int | None:
        """Total memory of the device watched, when known."""
        return None

    def describe(self) -> dict[str, Any]:
        """What is measured, for the run header (device name, driver, versions)."""
        return {"source": self.name}


class RssSource(MemorySource):
    """Host RSS as ``allocated`` and ``reserved`` (coarse: glibc keeps freed memory; last resort)."""

    name = "rss"

    def read(self, rss: bool = True) -> Sample:
        value = host_rss_bytes()
        return Sample(allocated_bytes=value, reserved_bytes=value, peak_allocated_bytes=value,
                      peak_reserved_bytes=value, host_rss_bytes=value)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _load_mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn  # type: ignore[no-any-return]


class MallocSource(MemorySource):
    """glibc heap (``mallinfo2``, ~1 µs): in-use bytes as ``allocated``, heap + mmapped as ``reserved``.

    torch allocates CPU tensor storage with ``posix_memalign``, so a leaked tensor shows here byte for
    byte while allocator fragmentation (which inflates RSS with varying shapes) does not.
    """

    name = "malloc"

    def __init__(self) -> None:
        fn = _load_mallinfo2()
        if fn is None:
            raise OSError("glibc mallinfo2 is not available on this system")
        self._mallinfo2 = fn
        self._peak_alloc = 0
        self._peak_res = 0

    @staticmethod
    def available() -> bool:
        """Whether this libc has ``mallinfo2`` (glibc >= 2.33)."""
        return _load_mallinfo2() is not None

    def read(self, rss: bool = True) -> Sample:
        info = self._mallinfo2()
        allocated = int(info.uordblks + info.hblkhd)
        reserved = int(info.arena + info.hblkhd)
        self._peak_alloc = max(self._peak_alloc, allocated)
        self._peak_res = max(self._peak_res, reserved)
        return Sample(allocated_bytes=allocated, reserved_bytes=reserved, peak_allocated_bytes=self._peak_alloc,
                      peak_reserved_bytes=self._peak_res, host_rss_bytes=host_rss_bytes() if rss else None)

    def reset_peak(self) -> None:
        info = self._mallinfo2()
        self._peak_alloc = int(info.uordblks + info.hblkhd)
        self._peak_res = int(info.arena + info.hblkhd)

    def capacity_bytes(self) -> int | None:
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (AttributeError, OSError, ValueError):
            return None

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "device": "cpu", "note": "glibc malloc in-use bytes (allocated), heap (reserved)"}


def _nvml_index(index: int) -> int:
    """NVML's index of CUDA device ``index`` under ``CUDA_VISIBLE_DEVICES`` (ordinals or GPU UUIDs)."""
    try:  # torch's own mapping understands UUIDs and MIG ids too
        import torch

        return int(torch.cuda._get_nvml_device_index(index))
    except Exception:
        pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    if visible and visible[0].strip() and index < len(visible) and visible[index].strip().isdigit():
        return int(visible[index])
    return index


class _Nvml:
    """NVML device handle through ``pynvml`` (package ``nvidia-ml-py``); None when unavailable."""

    def __init__(self, index: int) -> None:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        self._pynvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(_nvml_index(index))
        self.driver = _text(pynvml.nvmlSystemGetDriverVersion())

    def used(self) -> int:
        return int(self._pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)


def _device_index(device: Any) -> int:
    """An int CUDA ordinal from an int, 'cuda:1' or a torch.device ('cuda' alone: the current device)."""
    if isinstance(device, int):
        return device
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"CudaSource needs a CUDA device, got {device!r}")
    return torch.cuda.current_device() if dev.index is None else int(dev.index)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CudaSource(MemorySource):
    """CUDA caching allocator of one device, NVML (or cudaMemGetInfo) device use, host RSS."""

    name = "cuda"
    tracks_peaks = True

    def __init__(self, device: int | None = None, use_nvml: bool = True) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available")
        self._torch = torch
        # the allocator's stats exist only once CUDA is initialised (torch.cuda.memory_stats returns {} before)
        torch.cuda.init()
        self.device = torch.cuda.current_device() if device is None else _device_index(device)
        self._stats = getattr(torch._C, "_cuda_memoryStats", None)
        self._nvml: _Nvml | None = None
        if use_nvml:
            try:
                self._nvml = _Nvml(self.device)
            except Exception:
                self._nvml = None

    def _device_used(self) -> int | None:
        if self._nvml is not None:
            try:
                return self._nvml.used()
            except Exception:
                self._nvml = None
        try:
            free, total = self._torch.cuda.mem_get_info(self.device)
            return int(total - free)
        except Exception:
            return None

    def read(self, rss: bool = True) -> Sample:
        cuda = self._torch.cuda
        if self._stats is not None:
            stats = self._stats(self.device)
            alloc, res = stats["allocated_bytes"]["all"], stats["reserved_bytes"]["all"]
            values = (alloc["current"], res["current"], alloc["peak"], res["peak"])
        else:  # pragma: no cover - older torch
            values = (cuda.memory_allocated(self.device), cuda.memory_reserved(self.device),
                      cuda.max_memory_allocated(self.device), cuda.max_memory_reserved(self.device))
        return Sample(allocated_bytes=int(values[0]), reserved_bytes=int(values[1]),
                      peak_allocated_bytes=int(values[2]), peak_reserved_bytes=int(values[3]),
                      device_used_bytes=self._device_used(), host_rss_bytes=host_rss_bytes() if rss else None)

    def reset_peak(self) -> None:
        self._torch.cuda.reset_peak_memory_stats(self.device)

    def capacity_bytes(self) -> int | None:
        return int(self._torch.cuda.get_device_properties(self.device).total_memory)

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        props = torch.cuda.get_device_properties(self.device)
        return {
            "source": self.name,
            "device": f"cuda:{self.device}",
            "gpu_name": props.name,
            "capacity_bytes": int(props.total_memory),
            "compute_capability": f"{props.major}.{props.minor}",
            "driver": self._nvml.driver if self._nvml is not None else None,
            "device_used_from": "nvml" if self._nvml is not None else "cudaMemGetInfo",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
        }


class CallableSource(MemorySource):
    """Wraps ``fn() -> int | Mapping[str, int]``: an int is ``allocated``; a mapping fills ``Sample`` fields."""

    name = "callable"

    def __init__(self, fn: Callable[[], int | Mapping[str, int | None]], capacity_bytes: int | None = None) -> None:
        self._fn = fn
        self._capacity = capacity_bytes
        self._peak_alloc: int | None = None
        self._peak_res: int | None = None

    def read(self, rss: bool = True) -> Sample:
        value = self._fn()
        if isinstance(value, Mapping):
            sample = Sample(**{k: (None if v is None else int(v)) for k, v in value.items() if k in SAMPLE_FIELDS})
        else:
            sample = Sample(allocated_bytes=int(value))
        if sample.reserved_bytes is None:
            sample.reserved_bytes = sample.allocated_bytes
        for attr, peak in (("allocated_bytes", "_peak_alloc"), ("reserved_bytes", "_peak_res")):
            cur = getattr(sample, attr)
            if cur is not None:
                setattr(self, peak, cur if getattr(self, peak) is None else max(getattr(self, peak), cur))
        if sample.peak_allocated_bytes is None:
            sample.peak_allocated_bytes = self._peak_alloc
        if sample.peak_reserved_bytes is None:
            sample.peak_reserved_bytes = self._peak_res
        return sample

    def reset_peak(self) -> None:
        self._peak_alloc = self._peak_res = None

    def capacity_bytes(self) -> int | None:
        return self._capacity


class FakeSource(MemorySource):
    """Scripted samples for tests: each ``read()`` returns the next one (the last repeats)."""

    name = "fake"
    tracks_peaks = True

    def __init__(self, samples: Iterable[Sample | Mapping[str, int | None] | int], capacity_bytes: int | None = None) -> None:
        self._samples = [s if isinstance(s, Sample) else Sample(**s) if isinstance(s, Mapping)
                         else Sample(allocated_bytes=s, reserved_bytes=s, peak_allocated_bytes=s, peak_reserved_bytes=s)
                         for s in samples]
        if not self._samples:
            raise ValueError("FakeSource needs at least one sample")
        self._i = 0
        self._capacity = capacity_bytes
        self.resets = 0

    def read(self, rss: bool = True) -> Sample:
        sample = self._samples[min(self._i, len(self._samples) - 1)]
        self._i += 1
        return replace(sample)

    def reset_peak(self) -> None:
        self.resets += 1

    def capacity_bytes(self) -> int | None:
        return self._capacity


def default_source(device: int | None = None) -> MemorySource:
    """CUDA when torch sees a GPU, else glibc malloc, else RSS."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch  # noqa: F811
        except Exception:
            torch = None
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return CudaSource(device)
        except Exception:
            pass
    if MallocSource.available():
        return MallocSource()
    return RssSource()
