"""PSLD end to end through the runner on a tiny random latent prior (diffusers folder, loaded with load_sd)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runner import read_metrics_csv


@pytest.mark.parametrize("task", ["box_inpaint", "sr4"])
def test_psld_end_to_end(run_fast, tiny_sd_folder, steps_table, task):
    cfg, summary = run_fast("prior=tiny_sd", f"prior.source={tiny_sd_folder}", f"task={task}", "pag.enabled=true")
    settings = summary["settings"]
    # ours, not the paper's: the shapes row of the PSLD table (its PAG scale is per task, in the folder name)
    row = steps_table["psld"]["shapes"]
    scale = row["tasks"][task]["pag_scale"]
    assert cfg.solver.name == "psld"
    assert re.fullmatch(rf"demo_tiny_sd_psld_3steps_pag{scale:g}_seed0_[0-9a-f]{{8}}", cfg.name)
    assert settings["pag"]["scale"] == scale
    assert (settings["omega"], settings["gamma"]) == (row["tasks"][task]["omega_pag"], row["tasks"][task]["gamma_pag"])
    assert settings["pag"]["layers"] == row["pag_layers"] == ["output_blocks.10.1.transformer_blocks.0.attn1"]
    folder = Path(cfg.out_dir) / task
    rows = read_metrics_csv(folder / "metrics.csv")
    assert [r["status"] for r in rows] == ["done", "done"]
    for r in rows:
        assert np.asarray(Image.open(folder / "recon" / f"{r['name']}.png")).shape == (32, 32, 3)
        # progress frames are decoded latents: 3 steps -> 3 frames of 32 px
        assert np.asarray(Image.open(folder / "progress" / f"{r['name']}.png")).shape == (32, 3 * 32 + 2 * 2, 3)
    assert summary["counts"]["done"] == 2
    assert summary["metrics"]["psnr"]["mean"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]), rel=1e-12)


def test_psld_with_a_pixel_prior_is_refused(run_tiny):
    from runner import SetupError

    with pytest.raises(SetupError, match="solver=psld needs a latent prior"):
        run_tiny("solver=psld")
