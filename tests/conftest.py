"""Shared test set-up: CPU only, no network, explicit seeds; the tiny priors and config fixtures of the runner and
script tests (tests/runner, tests/scripts)."""

import os

# Before torch/diffusers are imported: never touch a GPU or the network from the test suite.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import json
from pathlib import Path

import pytest
import torch
import yaml

import runner

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


#: environment variables the configs read; tests must not see a user's values
CONFIG_ENV = ("ADM_CHECKPOINTS", "SD15_PATH", "FFHQ_DIR", "IMAGENET_VAL_DIR")


@pytest.fixture
def offline_metrics_and_clean_env(tmp_path_factory, monkeypatch):
    """No cached metric weights (LPIPS/FID report 'unavailable') and none of the configs' environment variables;
    no download failed yet (each test is a new command)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    runner.download.forget_failures()
    for name in CONFIG_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-init ADM with the shipped tiny prior's architecture (32 px, so the table's PAG layers exist), saved
    with ``save_adm``: header holds its config. Random weights keep the pipeline tests independent of training."""
    from priors.adm import ADMPrior, save_adm
    from priors.tiny import TINY_ADM

    config = json.loads(TINY_ADM.with_suffix(".json").read_text())["model"]
    prior = ADMPrior.from_preset(config, init="random", generator=torch.Generator().manual_seed(0))
    return save_adm(prior.network, tmp_path_factory.mktemp("prior") / "tiny_adm.safetensors")


@pytest.fixture(scope="session")
def tiny_sd_folder(tmp_path_factory) -> Path:
    """A random-init tiny latent prior (SD1.5-shaped UNet, 32 px <-> 4x8x8) saved as a diffusers folder."""
    sd = pytest.importorskip("priors.sd", reason="priors.sd (the latent SD prior) is not in this checkout")
    prior = sd.random_sd_prior(seed=0, image_size=32, with_text_encoder=False)
    return sd.save_sd(prior, tmp_path_factory.mktemp("prior") / "tiny_sd")


@pytest.fixture
def fast_overrides(tmp_path) -> list[str]:
    """Fast settings: 3 steps, 2 demo images, results under tmp_path."""
    return [
        f"results_root={tmp_path / 'results'}",
        "solver.num_steps=3",
        "progress_every=1",
        "data.limit=2",
        "show_progress=false",
        "batch_size=1",  # byte-exact comparisons between runs assume one image per sampler call
    ]


@pytest.fixture(scope="session")
def steps_table() -> dict:
    """conf/steps/paper.yaml parsed directly (not through the runner): the expected step sizes and PAG settings."""
    return yaml.safe_load((REPO / "conf" / "steps" / "paper.yaml").read_text())


@pytest.fixture
def tiny_overrides(tiny_checkpoint, fast_overrides) -> list[str]:
    """``fast_overrides`` with the tiny random ADM as the prior."""
    return [f"prior.checkpoint={tiny_checkpoint}", *fast_overrides]


@pytest.fixture
def run_fast(fast_overrides):
    """``run_fast(*overrides)``: compose with ``fast_overrides`` first and run: (cfg, summary)."""

    def _run(*overrides: str):
        cfg = runner.compose(*fast_overrides, *overrides)
        return cfg, runner.run(cfg)

    return _run


@pytest.fixture
def run_tiny(tiny_overrides):
    """``run_tiny(*overrides)`` composes the config (tiny defaults first) and runs it: (cfg, summary)."""

    def _run(*overrides: str):
        cfg = runner.compose(*tiny_overrides, *overrides)
        return cfg, runner.run(cfg)

    return _run
