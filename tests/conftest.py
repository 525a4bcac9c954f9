import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _data_dir():
    """Tests read real data from $ADLIB_DATA (CI: ../shared/data)."""
    if not os.environ.get("ADLIB_DATA") and SHARED_DATA.exists():
        os.environ["ADLIB_DATA"] = str(SHARED_DATA)
    yield


@pytest.fixture()
def scratch_outputs(tmp_path, monkeypatch):
    """Send figures/results/checkpoints of a test to a temporary directory."""
    for var in ("ADLIB_FIGURES", "ADLIB_RESULTS", "ADLIB_CHECKPOINTS"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    return tmp_path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny test models run faster single-threaded (and far faster when the CPU is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """The suite's models are tiny: one thread (or $ADLIB_THREADS) is faster than one per core, much faster on a
    shared machine, and the same for every test."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("ADLIB_THREADS") or 1))
    yield
    torch.set_num_threads(before)
