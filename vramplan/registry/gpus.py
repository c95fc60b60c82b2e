"""GPU catalog (``vramplan/registry/gpus.json``) and the ``--gpus`` syntax.

Owns turning catalog entries into ``GPUSpec`` (ids and aliases, case-insensitive) and parsing strings
such as ``4xrtx4090``, ``8xa100-80g``, ``rtx4090`` and ``6x24GiB`` / ``2x80GB`` (a custom GPU of that
size). Imports only the standard library and ``vramplan.core`` (via ``_data``).
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from typing import Any

from ..core.errors import SpecError, UnknownNameError
from ..core.hardware import GPUSpec
from ..core.units import GB, GiB
from ._data import name_key, read_json


def _spec(gpu_id: str, e: dict[str, Any]) -> GPUSpec:
    interconnect = str(e.get("interconnect") or "pcie")
    pcie = int(e.get("pcie_bandwidth_bytes_per_s") or 0)
    nvlink = int(e.get("nvlink_bandwidth_bytes_per_s") or 0)
    return GPUSpec(
        id=gpu_id, display_name=str(e.get("display_name") or gpu_id), memory_bytes=int(e["memory_bytes"]),
        bf16=bool(e.get("bf16", True)), flash_attention=bool(e.get("flash_attention", True)),
        compute_capability=str(e.get("compute_capability") or ""),
        memory_bandwidth_bytes_per_s=int(e.get("memory_bandwidth_bytes_per_s") or 0),
        bf16_dense_flops=int(e.get("bf16_dense_flops") or 0), interconnect=interconnect,
        p2p=bool(e.get("p2p", True)),
        link_bandwidth_bytes_per_s=nvlink if interconnect == "nvlink" and nvlink else pcie,
        pcie_bandwidth_bytes_per_s=pcie, vendor=str(e.get("vendor") or "nvidia"),
    )


@lru_cache(maxsize=1)
def _catalog() -> dict[str, GPUSpec]:
    gpus = read_json("gpus.json").get("gpus", {})
    return {gpu_id: _spec(gpu_id, entry) for gpu_id, entry in gpus.items()}


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    table: dict[str, str] = {}
    for gpu_id, entry in read_json("gpus.json").get("gpus", {}).items():
        for alias in entry.get("aliases", []):
            table.setdefault(name_key(alias), gpu_id)
    for gpu_id in _catalog():  # ids win over aliases
        table[name_key(gpu_id)] = gpu_id
    return table


def list_gpus() -> list[GPUSpec]:
    """Every catalog GPU, in file order."""
    return list(_catalog().values())


def load_gpu(name: str) -> GPUSpec:
    """The catalog GPU called ``name`` (id or alias, case-insensitive; ``-``/``_``/spaces ignored)."""
    gpu_id = _aliases().get(name_key(name))
    if gpu_id is None:
        aliases = {a for e in read_json("gpus.json")["gpus"].values() for a in e.get("aliases", [])}
        names = sorted(set(_catalog()) | aliases)
        close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownNameError(f"unknown GPU {name!r}; {hint}known: {', '.join(_catalog())}; "
                               "or give a size such as 24GiB or 80GB")
    return _catalog()[gpu_id]


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(gib|gb)$", re.IGNORECASE)
_COUNT = re.compile(r"^\s*(\d+)\s*[x*]\s*(.*)$", re.IGNORECASE)


def custom_gpu(size: str) -> GPUSpec:
    """A GPU known only by its memory: ``24GiB`` (x 1024^3) or ``80GB`` (x 10^9).

    The whole size counts as usable (real cards report less, see gpus.json). It has no FLOP/s or
    bandwidth figures, so step-time estimates need a catalog GPU; it is assumed to do bf16 and to have
    no peer-to-peer access (PCIe).
    """
    m = _SIZE.match(size.strip())
    if m is None:
        raise SpecError(f"gpus={size!r}: not a memory size; write e.g. 24GiB or 80GB")
    amount, unit = m.group(1), m.group(2).lower()
    memory = int(float(amount) * (GiB if unit == "gib" else GB))
    label = f"{amount}{'GiB' if unit == 'gib' else 'GB'}"
    return GPUSpec(id=f"custom-{amount}{unit}", display_name=f"custom {label} GPU", memory_bytes=memory, bf16=True,
                   interconnect="pcie", p2p=False, vendor="unknown")


def parse_gpus(text: str) -> tuple[GPUSpec, int]:
    """``"4xrtx4090"`` -> (RTX 4090, 4); ``"rtx4090"`` -> (RTX 4090, 1); ``"6x24GiB"`` -> (custom 24 GiB, 6)."""
    raw = text.strip()
    if not raw:
        raise SpecError("gpus='': empty; write e.g. 4xrtx4090, 8xa100-80g or 2x80GB")
    m = _COUNT.match(raw)
    count, name = (int(m.group(1)), m.group(2).strip()) if m else (1, raw)
    if m is None and re.match(r"^[x*]\s*\d", raw, re.IGNORECASE) and name_key(raw) not in _aliases():
        raise SpecError(f"gpus={text!r}: the GPU count is missing before 'x'; write e.g. 4{raw}")
    if not name:
        raise SpecError(f"gpus={text!r}: the GPU name is missing after '{raw}'; "
                        f"write e.g. {count}xrtx4090 or {count}x24GiB")
    if count < 1:
        raise SpecError(f"gpus={text!r}: the GPU count must be at least 1; write e.g. 1x{name}")
    if _SIZE.match(name):
        return custom_gpu(name), count
    try:
        return load_gpu(name), count
    except UnknownNameError as exc:
        raise UnknownNameError(f"gpus={text!r}: {exc}") from None
