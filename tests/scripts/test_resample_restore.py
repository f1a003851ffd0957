"""ReSample through ``scripts/restore.py`` like a user types it, on the shipped tiny latent prior (few steps, every
step resampling so that both optimisation phases run), with and without PAG; ``pag.scale=0`` writes the same images
as no PAG."""

from __future__ import annotations

import math

from runner import read_metrics_csv


def restore(script, tmp_path, name, *extra):
    results = tmp_path / name
    args = [
        "solver=resample",
        "prior=tiny_sd",
        "task=box_inpaint",
        f"results_root={results}",
        "solver.num_steps=4",
        "solver.resample_every=1",  # counted-down indices 1..2 resample: a pixel search at 2, a latent one at 1
        "solver.pixel_iters=3",
        "solver.latent_iters=3",
        "data.limit=2",
        "progress_every=0",
        *extra,
    ]
    result = script("restore.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (csv,) = results.rglob("box_inpaint/metrics.csv")
    rows = read_metrics_csv(csv)
    assert len(rows) == 2 and all(math.isfinite(float(r["psnr"])) for r in rows)
    return csv, rows


def test_restore_script_runs_resample_with_and_without_pag(tmp_path, script):
    csv, plain = restore(script, tmp_path, "plain")
    assert "_tiny_sd_resample_4steps_pag0_" in str(csv)
    csv, guided = restore(script, tmp_path, "pag", "pag.enabled=true")
    assert "_tiny_sd_resample_4steps_pag4" in str(csv)  # the shapes row's box_inpaint scale
    assert [r["psnr"] for r in plain] != [r["psnr"] for r in guided]  # PAG changed the restorations
    _, zero = restore(script, tmp_path, "zero", "pag.scale=0")
    assert [r["psnr"] for r in zero] == [r["psnr"] for r in plain]
