"""GPU catalog and the ``--gpus`` syntax."""

from __future__ import annotations

import pytest

from vramplan.core.errors import SpecError, UnknownNameError, VramplanError
from vramplan.core.units import GB, GiB
from vramplan.registry import list_gpus, load_gpu, parse_gpus


def test_catalog_loads() -> None:
    gpus = list_gpus()
    assert len(gpus) >= 10
    assert all(g.memory_bytes > 20 * 1024**2 for g in gpus)
    assert len({g.id for g in gpus}) == len(gpus)


@pytest.mark.parametrize("name", ["rtx4090", "RTX-4090", "4090", "geforce rtx 4090"])
def test_load_gpu_aliases(name: str) -> None:
    gpu = load_gpu(name)
    assert gpu.id == "rtx4090" and not gpu.p2p and gpu.is_consumer_ada


def test_link_bandwidth_is_nvlink_when_present() -> None:
    a100 = load_gpu("a100-80g")
    assert a100.interconnect == "nvlink" and a100.link_bandwidth_bytes_per_s > a100.pcie_bandwidth_bytes_per_s
    rtx = load_gpu("rtx4090")
    assert rtx.link_bandwidth_bytes_per_s == rtx.pcie_bandwidth_bytes_per_s > 0


@pytest.mark.parametrize(("text", "gpu_id", "count"), [
    ("4xrtx4090", "rtx4090", 4), ("8xa100-80g", "a100-80g", 8), ("rtx4090", "rtx4090", 1),
    ("2 x H100", "h100-80g", 2), ("8xmi300x", "mi300x", 8), ("1xa100", "a100-40g", 1),
])
def test_parse_gpus(text: str, gpu_id: str, count: int) -> None:
    gpu, n = parse_gpus(text)
    assert (gpu.id, n) == (gpu_id, count)


def test_parse_custom_sizes() -> None:
    gpu, n = parse_gpus("6x24GiB")
    assert (gpu.id, n, gpu.memory_bytes) == ("custom-24gib", 6, 24 * GiB)
    assert gpu.bf16 and not gpu.p2p and gpu.interconnect == "pcie" and gpu.bf16_dense_flops == 0
    gpu, n = parse_gpus("2x80GB")
    assert (gpu.id, n, gpu.memory_bytes) == ("custom-80gb", 2, 80 * GB)
    assert parse_gpus("48gib")[0].memory_bytes == 48 * GiB


@pytest.mark.parametrize(("text", "error", "words"), [
    ("4x", SpecError, "name is missing"),
    ("x4090", SpecError, "count is missing"),
    ("4xfoo", UnknownNameError, "unknown GPU 'foo'"),
    ("0xrtx4090", SpecError, "at least 1"),
    ("", SpecError, "empty"),
])
def test_bad_gpu_strings(text: str, error: type[VramplanError], words: str) -> None:
    with pytest.raises(error, match=words) as info:
        parse_gpus(text)
    assert "e.g." in str(info.value) or "known:" in str(info.value)


def test_unknown_gpu_suggests() -> None:
    with pytest.raises(UnknownNameError, match="did you mean") as info:
        load_gpu("rtx4080")
    assert "rtx4090" in str(info.value) or "4090" in str(info.value)
