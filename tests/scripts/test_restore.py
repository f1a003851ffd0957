"""scripts/restore.py like a user types it (subprocesses): one run, a multirun, an unknown solver."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from runner import read_metrics_csv


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_restore_script_like_a_user(tiny_checkpoint, tmp_path, script):
    results = tmp_path / "results"
    args = [
        "task=sr4",
        f"prior.checkpoint={tiny_checkpoint}",
        f"results_root={results}",
        "solver.num_steps=2",
        "data.limit=2",
        "pag.scale=2",
        "progress_every=0",
    ]
    result = script("restore.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (task_dir,) = results.glob("demo_tiny_adm_dps_2steps_pag2_seed0_*/sr4")  # plus the hash of the other settings
    assert (task_dir / ".hydra" / "config.yaml").is_file()  # Hydra's run dir is the task folder
    assert len(read_metrics_csv(task_dir / "metrics.csv")) == 2
    assert not (task_dir / "progress").exists()
    output = result.stdout + result.stderr
    assert "sr4: 2/2 done, 0 failed, 0 skipped" in output
    # to a pipe: one plain progress bar over image-steps (no cursor-movement escape codes), the LPIPS reason once
    assert "\x1b[" not in output and "sr4 (2 images x 2 steps)" in result.stderr
    # the bar ends at its total: 2 images x 2 steps, each counted once (not again when the image is saved)
    assert re.search(r"\b4/4 \[", result.stderr)  # tqdm shows "8step [..." with no total once n passes it
    assert not re.search(r"\b([5-9]|\d\d+)/4\b|\d+step \[", result.stderr)
    assert output.count("LPIPS unavailable: ") == 1
    rows = read_metrics_csv(task_dir / "metrics.csv")
    assert {r["lpips_note"] for r in rows} == {"unavailable: see metrics.lpips.unavailable in summary.json"}


def test_multirun_gives_one_folder_per_job(tiny_checkpoint, tmp_path, script):
    results = tmp_path / "results"
    result = script(
        "restore.py",
        "-m",
        "task=box_inpaint,sr4",
        "seed=0,1",
        f"prior.checkpoint={tiny_checkpoint}",
        f"results_root={results}",
        "solver.num_steps=1",
        "data.limit=1",
        "show_progress=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folders = sorted(str(p.parent.relative_to(results)) for p in results.glob("*/*/summary.json"))
    # the tasks of one seed share the experiment folder (its hash leaves out the task: that is the sub-folder)
    assert [re.sub("_[0-9a-f]{8}/", "_<hash>/", f) for f in folders] == [
        "demo_tiny_adm_dps_1steps_pag0_seed0_<hash>/box_inpaint",
        "demo_tiny_adm_dps_1steps_pag0_seed0_<hash>/sr4",
        "demo_tiny_adm_dps_1steps_pag0_seed1_<hash>/box_inpaint",
        "demo_tiny_adm_dps_1steps_pag0_seed1_<hash>/sr4",
    ]
    assert folders[0].split("/")[0] == folders[1].split("/")[0]
    seed0 = png(results / folders[1] / "recon/shapes_test_00000.png")  # sr4, seed 0
    seed1 = png(results / folders[3] / "recon/shapes_test_00000.png")  # sr4, seed 1
    assert not np.array_equal(seed0, seed1)


def test_unknown_solver_from_the_command_line(script, tmp_path):
    result = script("restore.py", "solver=nope", f"results_root={tmp_path}", cwd=tmp_path)
    assert result.returncode != 0 and "nope" in result.stderr
