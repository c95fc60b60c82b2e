"""Session fixtures for the doctor tests (the MGM issue #75 reports are built once)."""

from __future__ import annotations

import pytest
from doctor_helpers import MGM_2B, MGM_8X7B

from vramplan.doctor import run_doctor


@pytest.fixture(scope="session")
def report_2b():
    """MGM-2B stage 2 + zero2.json on 4x RTX 4090 (MGM issue #75)."""
    return run_doctor(script=MGM_2B, gpus="4xrtx4090")


@pytest.fixture(scope="session")
def report_8x7b():
    """MGM-8x7B stage 2 + zero3.json on 6x RTX 4090 with 256 GB of host RAM (MGM issue #75)."""
    return run_doctor(script=MGM_8X7B, gpus="6xrtx4090", host_ram="256GB")
