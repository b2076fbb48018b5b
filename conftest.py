"""Shared fixtures: where the real data lives, the test device, one torch thread, hypothesis
profiles."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent

# Without an NVIDIA GPU the Triton kernel's tests run in Triton's CPU interpreter. Set here, before
# any test module imports triton (tests/test_kernel_static.py imports the kernel at collection),
# so that a plain `python -m pytest` tests what CI tests; without it those 42 tests were skipped.
if not glob.glob("/dev/nvidia[0-9]*"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("MTGFAST_HYPOTHESIS_PROFILE", "ci"))


def _data_dir() -> Path:
    env = os.environ.get("MTGFAST_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _missing_data_reason(d: Path) -> str | None:
    """Why the data tests skip (naming the folder and how it was chosen), or None."""
    if (d / "mtgnet").is_dir():
        return None
    what = "no such folder" if not d.exists() else "no mtgnet/ folder in it"
    if os.environ.get("MTGFAST_DATA"):
        return f"real data not found: MTGFAST_DATA={d} ({what})"
    return (f"real data not found at {d}, the default beside the repository ({what}); set "
            "MTGFAST_DATA to the data folder")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (or $MTGFAST_DATA): the recorded MTG-Net gain tables and the ETT series."""
    d = _data_dir()
    reason = _missing_data_reason(d)
    if reason is not None:
        pytest.skip(reason)
    return d


@pytest.fixture(scope="session")
def test_device() -> str:
    """Device for torch tests: $MTGFAST_TEST_DEVICE, default CPU."""
    return os.environ.get("MTGFAST_TEST_DEVICE", "cpu")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a test module: its models are tiny, extra threads only add
    contention on a shared 2-core CI machine. Restores the caller's setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
