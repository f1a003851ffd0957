"""A sharded 2-job multirun ends with the report written into the sweep folder by the Hydra callback: through
hydra-submitit-launcher's local executor (the SLURM launcher's code path, each job in its own process; slow: about
25 s on an idle 2-core machine, 60 s under load) and through Hydra's basic launcher (in-process, default suite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner import read_metrics_csv
from runner.report import merge_cells, read_job


@pytest.mark.parametrize("launcher", ["basic", pytest.param("submitit_local", marks=pytest.mark.slow)])
def test_sharded_multirun_writes_the_merged_report(script, tiny_overrides, launcher):
    result = script(
        "restore.py", "-m", f"hydra/launcher={launcher}", *tiny_overrides, "data.num_shards=2", "data.shard=0,1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    root = Path(next(o.split("=", 1)[1] for o in tiny_overrides if o.startswith("results_root=")))
    if launcher == "submitit_local":
        assert len(list((root / ".submitit").glob("*/*_result.pkl"))) == 2  # two jobs ran through submitit
    report = root / "report"
    assert "report of" in result.stderr + result.stdout
    cells = json.loads((report / "report.json").read_text())["cells"]
    assert len(cells) == 1  # the two shards are one cell
    (cell,) = cells
    rows = [r for f in {Path(p) for p in cell["folders"]} for r in read_metrics_csv(f / "metrics.csv")]
    names = {r["name"] for r in rows}
    assert names == {"shapes_test_00000", "shapes_test_00001"}  # image k ran in shard k % 2
    assert (cell["images"], cell["done"], cell["failed"], cell["remaining"], cell["complete"]) == (2, 2, 0, 0, True)
    psnrs = {r["name"]: float(r["psnr"]) for r in rows}
    assert cell["metrics"]["psnr"]["mean"] == sum(psnrs.values()) / 2
    # the tiny prior's FID is on the shipped shapes features: computed by the last shard over both shards' images
    summary = json.loads((Path(cell["folders"][0]) / "summary.json").read_text())
    assert summary["metrics"]["fid"]["extractor"].startswith("shapes")
    assert cell["metrics"]["fid"]["mean"] == pytest.approx(summary["metrics"]["fid"]["value"])
    for path in (
        "README.md",
        "tables/demo_tiny_adm.md",
        "tables/demo_tiny_adm.tex",
        "tables/demo_tiny_adm.csv",
        "plots/demo_tiny_adm_psnr_vs_pag.svg",
        "plots/demo_tiny_adm_seconds.png",
        "gallery/index.html",
    ):
        assert (report / path).is_file(), path
    assert len(list((report / "gallery" / "img").rglob("*.png"))) == 2 * 3  # label, input, recon per image
    if launcher == "basic":  # the script writes the same tables as the callback
        again = script("report.py", str(root), "--out", str(root / "again"))
        assert again.returncode == 0, again.stderr[-3000:]
        for name in ("demo_tiny_adm.md", "demo_tiny_adm.csv", "demo_tiny_adm.tex"):
            assert (root / "again" / "tables" / name).read_text() == (report / "tables" / name).read_text()

    # a job still running (no summary.json yet) is read from its .hydra/config.yaml: same cell as when finished
    folder = Path(cell["folders"][0])
    finished = read_job(folder)
    (folder / "summary.json").unlink()
    running = read_job(folder)
    assert running.summary is None and finished.summary is not None
    assert merge_cells([running])[0].method == merge_cells([finished])[0].method
    assert running.rows.keys() == finished.rows.keys()


def test_report_script(script, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = script("report.py", str(empty))
    assert result.returncode == 2 and "no jobs under" in result.stderr
    assert script("report.py", str(tmp_path / "missing")).returncode == 2
