"""DAPS and LatentDAPS through ``scripts/restore.py`` like a user types it, on the shipped tiny priors (few steps)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("solver", "prior", "extra"),
    [("daps", "tiny_adm", ["solver.mcmc_steps=5"]), ("latent_daps", "tiny_sd", ["solver.mcmc_steps=3"])],
)
def test_restore_script_runs_daps(restore_box_inpaint, solver, prior, extra):
    restored = restore_box_inpaint("results", solver, "pag.enabled=true", *extra, prior=prior, steps=2, images=1)
    assert f"_{prior}_{solver}_2steps_pag" in str(restored.csv)
