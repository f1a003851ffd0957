"""``solver.restarts`` through the runner: ``restore.py task=phase_retrieval solver=dps solver.restarts=2`` end to end
on the tiny prior, each image's record naming the kept restart and every restart's residual; the kept restart's
image is the one a run of that restart alone gives; restarts=0 refused at start-up with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import runner

PHASE = ["task=phase_retrieval", "solver=dps", "solver.num_steps=3", "data.limit=3", "progress_every=0"]


def records(folder) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "records").glob("*.json"))}


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture
def restarted(tiny_checkpoint, tmp_path, script):
    """The CLI run with two restarts: its task folder."""
    results = tmp_path / "results"
    args = [*PHASE, "solver.restarts=2", f"prior.checkpoint={tiny_checkpoint}", f"results_root={results}"]
    result = script("restore.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (summary,) = results.rglob("summary.json")
    return summary.parent


def test_restarts_from_the_cli_keep_the_best_fitting_run(restarted, tiny_checkpoint, tmp_path):
    kept = records(restarted)
    assert len(kept) == 3 and all(r["status"] == "done" for r in kept.values())
    for r in kept.values():
        assert len(r["residuals"]) == 2 and all(np.isfinite(r["residuals"]))
        assert r["restart"] == int(np.argmin(r["residuals"]))  # ties keep the first: argmin's too
    # restart 0 is the run without restarts (the image's usual sampler stream): where it was kept, the saved image
    # is byte for byte the one-run result; where restart 1 was kept, it is another image
    base = [f"prior.checkpoint={tiny_checkpoint}", f"results_root={tmp_path / 'one_run'}", "show_progress=false"]
    cfg = runner.compose(*base, *PHASE)
    assert runner.run(cfg)["counts"]["done"] == 3
    single = runner.task_dir(cfg)
    assert single != restarted  # restarts are part of the folder's identity
    for name, r in kept.items():
        same = np.array_equal(pixels(restarted / "recon" / f"{name}.png"), pixels(single / "recon" / f"{name}.png"))
        assert same == (r["restart"] == 0), (name, r)
        assert "restart" not in records(single)[name]  # one run: the record is as before restarts existed


def test_resume_with_restarts_redoes_nothing(restarted, tiny_checkpoint, tmp_path, script):
    """The same command again finds every image done (the records name the restarts) and changes nothing."""
    before = {p: p.read_bytes() for p in [*restarted.rglob("*.png"), *(restarted / "records").glob("*.json")]}
    args = [*PHASE, "solver.restarts=2", f"prior.checkpoint={tiny_checkpoint}", f"results_root={tmp_path / 'results'}"]
    result = script("restore.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p: p.read_bytes() for p in before} == before
    assert len(list((tmp_path / "results").rglob("summary.json"))) == 1  # the same folder


@pytest.mark.parametrize("value", ["0", "-1", "1.5"])
def test_restarts_below_one_refused_at_start_up(value, tiny_checkpoint, tmp_path, script):
    results = tmp_path / "results"
    args = [*PHASE, f"solver.restarts={value}", f"prior.checkpoint={tiny_checkpoint}", f"results_root={results}"]
    result = script("restore.py", *args, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == f"error: solver.restarts={value}: an integer >= 1"
    assert not results.exists()
