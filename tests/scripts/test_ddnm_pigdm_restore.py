"""DDNM and PiGDM through ``scripts/restore.py`` like a user types it, on the shipped tiny ADM (few steps), with and
without PAG; ``pag.scale=0`` writes the same images as no PAG."""

from __future__ import annotations

import math

import pytest

from runner import read_metrics_csv


def restore(script, tmp_path, solver, name, *extra):
    results = tmp_path / name
    args = [
        f"solver={solver}",
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
    return csv, rows


@pytest.mark.parametrize("solver", ["ddnm", "pigdm"])
def test_restore_script_runs_with_and_without_pag(tmp_path, script, solver):
    csv, plain = restore(script, tmp_path, solver, "plain")
    assert f"_tiny_adm_{solver}_3steps_pag0_" in str(csv)
    csv, guided = restore(script, tmp_path, solver, "pag", "pag.enabled=true")
    scale = {"ddnm": "0.25", "pigdm": "1"}[solver]  # the shapes rows' box_inpaint scales (conf/steps/paper.yaml)
    assert f"_tiny_adm_{solver}_3steps_pag{scale}_" in str(csv)
    assert [r["psnr"] for r in plain] != [r["psnr"] for r in guided]  # PAG changed the restorations
    _, zero = restore(script, tmp_path, solver, "zero", "pag.scale=0")
    assert [r["psnr"] for r in zero] == [r["psnr"] for r in plain]
