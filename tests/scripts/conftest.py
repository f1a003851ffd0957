"""Fixtures for the experiment tests: a tiny random ADM checkpoint, config composition, an empty TORCH_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import runner

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _offline_metrics_and_one_thread(tmp_path_factory, monkeypatch):
    """No cached metric weights (LPIPS/FID report 'unavailable'), and one CPU thread (tiny models run faster)."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-init tiny ADM (preset ``tiny``, 32 px) saved with ``save_adm``: header holds its config."""
    from priors.adm import ADMPrior, save_adm

    prior = ADMPrior.from_preset("tiny", init="random", generator=torch.Generator().manual_seed(0))
    return save_adm(prior.network, tmp_path_factory.mktemp("prior") / "tiny_adm.safetensors")


@pytest.fixture
def tiny_overrides(tiny_checkpoint, tmp_path) -> list[str]:
    """Fast settings: the tiny checkpoint, 3 steps, 2 demo images, results under tmp_path."""
    return [
        f"prior.checkpoint={tiny_checkpoint}",
        f"results_root={tmp_path / 'results'}",
        "solver.num_steps=3",
        "progress_every=1",
        "data.limit=2",
        "show_progress=false",
    ]


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
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        cwd=cwd or REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
