"""Fixtures for the experiment tests: a tiny random ADM checkpoint, config composition, an empty TORCH_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import runner

REPO = Path(__file__).resolve().parents[2]


#: environment variables the configs read; tests must not see a user's values
CONFIG_ENV = ("ADM_CHECKPOINTS", "SD15_PATH", "FFHQ_DIR", "IMAGENET_VAL_DIR")


@pytest.fixture(autouse=True)
def _offline_metrics_and_clean_env(tmp_path_factory, monkeypatch):
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


@pytest.fixture
def script():
    """``script("restore.py", *args)``: run a script in a subprocess like a user (see ``run_script``)."""
    return run_script


def run_script(script: str, *args: str, cwd: Path | None = None, env: dict | None = None):
    """``python scripts/<script> args...`` as a user types it (no PYTHONPATH), one CPU thread."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and k not in CONFIG_ENV}
    environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        cwd=cwd or REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
