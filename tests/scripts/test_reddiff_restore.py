"""RED-diff through ``scripts/restore.py`` like a user types it, on the shipped tiny ADM (few steps): without PAG,
with PAG scale 0 (the same restorations bit for bit) and with PAG, and a batch of two equal to two batches of one."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from runner import read_metrics_csv


def run(script, tmp_path, name, *extra):
    results = tmp_path / name
    args = [
        "solver=reddiff",
        "prior=tiny_adm",
        "task=box_inpaint",
        f"results_root={results}",
        "solver.num_steps=3",
        "data.limit=2",
        "progress_every=0",
        *extra,
    ]
    result = script("restore.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (csv,) = results.rglob("box_inpaint/metrics.csv")
    rows = read_metrics_csv(csv)
    assert len(rows) == 2 and all(math.isfinite(float(r["psnr"])) for r in rows)
    pngs = sorted((csv.parent / "recon").glob("*.png"))
    assert len(pngs) == 2
    return csv, rows, {p.name: np.asarray(Image.open(p)) for p in pngs}


def test_restore_script_runs_reddiff_with_and_without_pag(tmp_path, script):
    csv, plain, plain_png = run(script, tmp_path, "plain")
    assert "_tiny_adm_reddiff_3steps_" in str(csv)
    _, zero, zero_png = run(script, tmp_path, "zero", "pag.scale=0")
    csv_pag, guided, _ = run(script, tmp_path, "pag", "pag.enabled=true")
    assert "_pag" in str(csv_pag)
    psnr = [[r["psnr"] for r in rows] for rows in (plain, zero, guided)]
    assert psnr[0] == psnr[1]  # PAG scale 0 is no PAG
    assert psnr[2] != psnr[0]  # the table's PAG scale changes the restorations
    assert plain_png.keys() == zero_png.keys()
    assert all(np.array_equal(plain_png[k], zero_png[k]) for k in plain_png)
    _, one_by_one, _ = run(script, tmp_path, "single", "batch_size=1")
    assert [r["psnr"] for r in one_by_one] == psnr[0]  # a batch of two equals two batches of one
