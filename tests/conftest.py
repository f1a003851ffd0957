"""Shared test set-up: CPU only, no network, explicit seeds."""

import os

# Before torch/diffusers are imported: never touch a GPU or the network from the test suite.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


# The test models are tiny: on a 2-core machine torch's thread pool costs more than it gains, and with any
# other load it makes run times erratic (0.04 s to 4 s for the same forward pass). One thread is faster.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _cpu_float32_defaults():
    """Every test starts from the same numeric state and leaves it as found."""
    torch.set_default_dtype(torch.float32)
    torch.set_default_device("cpu")
    yield
    torch.set_default_dtype(torch.float32)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def real_samples_dir() -> Path:
    """``../shared/data/real_samples`` beside the repository (skip when absent; never copied in)."""
    path = SHARED / "data" / "real_samples"
    if not path.is_dir():
        pytest.skip(f"real samples not found at {path}")
    return path
