"""Fixtures for the script tests: run a script like a user (subprocess) or import it to call its ``main``."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import runner
from runner import read_metrics_csv

from ..conftest import CONFIG_ENV

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _offline(offline_metrics_and_clean_env):
    """No cached metric weights and none of the configs' environment variables (tests/conftest.py)."""


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


def load_script(script: str) -> ModuleType:
    """``scripts/<script>`` imported as a module, to call its ``main(argv)`` in this process."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, REPO / "scripts" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fetch_weights(capsys):
    """``fetch_weights(*args)``: scripts/fetch_weights.py's ``main`` in this process, as a new command (no failed
    downloads remembered); returns ``returncode``, ``stdout``, ``stderr``."""
    module = load_script("fetch_weights.py")

    def run(*args: str) -> SimpleNamespace:
        runner.download.forget_failures()
        capsys.readouterr()
        code = module.main(list(args))
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


@dataclass
class Restoration:
    """What one ``scripts/restore.py`` box-inpainting run wrote: its metrics.csv, the rows, the restored PNGs."""

    csv: Path
    rows: list[dict[str, str]]
    pngs: dict[str, np.ndarray]

    @property
    def psnr(self) -> list[str]:
        """The PSNR column as written (text: equal runs compare equal to the last digit)."""
        return [row["psnr"] for row in self.rows]


@pytest.fixture
def restore_box_inpaint(tmp_path, script):
    """``restore_box_inpaint(name, solver, *overrides, prior="tiny_adm", steps=3, images=2)``: ``scripts/restore.py``
    on box inpainting of the shipped shapes like a user types it, results under ``tmp_path/name``; checks that it
    ran and wrote one finite PSNR and one restored PNG per image."""

    def _restore(
        name: str, solver: str, *overrides: str, prior: str = "tiny_adm", steps: int = 3, images: int = 2
    ) -> Restoration:
        results = tmp_path / name
        args = [
            f"solver={solver}",
            f"prior={prior}",
            "task=box_inpaint",
            f"results_root={results}",
            f"solver.num_steps={steps}",
            f"data.limit={images}",
            "progress_every=0",
            *overrides,
        ]
        result = script("restore.py", *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        (csv,) = results.rglob("box_inpaint/metrics.csv")
        rows = read_metrics_csv(csv)
        assert len(rows) == images and all(math.isfinite(float(row["psnr"])) for row in rows)
        pngs = sorted((csv.parent / "recon").glob("*.png"))
        assert len(pngs) == images
        return Restoration(csv, rows, {png.name: np.asarray(Image.open(png)) for png in pngs})

    return _restore
