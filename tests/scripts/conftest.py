"""Fixtures for the script tests: run a script like a user (subprocess) or import it to call its ``main``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

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
