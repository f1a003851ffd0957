"""DAPS and LatentDAPS through ``scripts/restore.py`` like a user types it, on the shipped tiny priors (few steps)."""

from __future__ import annotations

import math

import pytest

from runner import read_metrics_csv


@pytest.mark.parametrize(
    ("solver", "prior", "extra"),
    [("daps", "tiny_adm", ["solver.mcmc_steps=5"]), ("latent_daps", "tiny_sd", ["solver.mcmc_steps=3"])],
)
def test_restore_script_runs_daps(tmp_path, script, solver, prior, extra):
    results = tmp_path / "results"
    args = [
        f"solver={solver}",
        f"prior={prior}",
        "task=box_inpaint",
        f"results_root={results}",
        "solver.num_steps=2",
        "data.limit=1",
        "pag.enabled=true",
        "progress_every=0",
        *extra,
    ]
    result = script("restore.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (csv,) = results.rglob("box_inpaint/metrics.csv")
    assert f"_{prior}_{solver}_2steps_pag" in str(csv)
    rows = read_metrics_csv(csv)
    assert len(rows) == 1 and math.isfinite(float(rows[0]["psnr"]))
