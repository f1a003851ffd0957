"""The experiment pipeline (``runner.run``) end to end on the CPU with a tiny random ADM: layout, rows, summary."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runner import build_operator, image_streams, read_metrics_csv

TASKS = ["box_inpaint", "random_inpaint", "sr4", "gaussian_deblur", "motion_deblur"]
SHAPES_EXTRACTOR = "shapes (evaluation/shapes_features32.safetensors, 128-d)"


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def psnr_from_files(recon: Path, label: Path) -> float:
    """Independent PSNR: from the 8-bit files, 10 log10(255^2 / MSE)."""
    a, b = png(recon).astype(np.float64), png(label).astype(np.float64)
    return 10 * math.log10(255.0**2 / np.mean((a - b) ** 2))


def check_task_folder(task_dir: Path, names: list[str], measurement_size: int, frames: int) -> list[dict]:
    """Files of every image in place with the right sizes; metrics.csv rows consistent with the files."""
    for name in names:
        assert png(task_dir / "label" / f"{name}.png").shape == (32, 32, 3)
        assert png(task_dir / "recon" / f"{name}.png").shape == (32, 32, 3)
        assert png(task_dir / "input" / f"{name}.png").shape == (measurement_size, measurement_size, 3)
        assert png(task_dir / "progress" / f"{name}.png").shape == (32, 32 * frames + 2 * (frames - 1), 3)
        tiles = 3 + frames  # label | input | recon | progress frames, 2 px apart
        # under a 14 px strip of column labels
        assert png(task_dir / "grid" / f"{name}.png").shape == (14 + 32, 32 * tiles + 2 * (tiles - 1), 3)
        assert json.loads((task_dir / "records" / f"{name}.json").read_text())["status"] == "done"
    rows = read_metrics_csv(task_dir / "metrics.csv")
    assert [r["name"] for r in rows] == names
    assert [int(r["index"]) for r in rows] == list(range(len(names)))
    for r in rows:
        assert r["status"] == "done"
        expected = psnr_from_files(task_dir / "recon" / f"{r['name']}.png", task_dir / "label" / f"{r['name']}.png")
        assert float(r["psnr"]) == pytest.approx(expected, abs=1e-6)
        assert -1 <= float(r["ssim"]) <= 1
        assert r["lpips"] == "" and r["lpips_note"].startswith("unavailable: ")  # no backbone weights here
    return rows


def check_summary(summary: dict, rows: list[dict], images: int) -> None:
    assert summary["counts"] == {"images": images, "done": len(rows), "failed": 0, "skipped": 0, "remaining": 0}
    for key in ("psnr", "ssim"):
        values = [float(r[key]) for r in rows]
        assert summary["metrics"][key]["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert summary["metrics"][key]["std"] == pytest.approx(np.std(values), rel=1e-9, abs=1e-12)
        assert summary["metrics"][key]["count"] == len(rows)
    assert (
        summary["metrics"]["lpips"]["count"] == 0
        and "alexnet-owt-7be5be79.pth" in summary["metrics"]["lpips"]["unavailable"]
    )
    # the tiny priors' FID/KID features are the shipped shapes network (Inception weights are not here)
    metrics = summary["metrics"]
    assert metrics["features"] == "shapes"
    if images < 4:  # KID's minimum, and FID's beside it (evaluation.kid): no number, the reason
        for metric in ("fid", "kid"):
            assert metrics[metric]["value"] is None
            assert f"needs >= 4 images per set, got {images} and {images}" in metrics[metric]["unavailable"]
        return
    assert metrics["fid"]["extractor"] == metrics["kid"]["extractor"] == SHAPES_EXTRACTOR
    assert math.isfinite(metrics["fid"]["value"]) and metrics["fid"]["value"] >= 0
    assert math.isfinite(metrics["kid"]["value"]) and metrics["kid"]["std"] >= 0
    assert metrics["kid"]["subset_size"] == 2 and metrics["kid"]["subsets"] == 100


def test_inception_features_without_weights_are_unavailable(run_tiny):
    _, summary = run_tiny("task=sr4", "metrics.features=inception", "data.limit=4")
    for metric in ("fid", "kid"):
        entry = summary["metrics"][metric]
        assert entry["value"] is None and entry["extractor"] == "inception"
        assert "pt_inception-2015-12-05-6726825d.pth" in entry["unavailable"]


@pytest.mark.parametrize("task", TASKS)
def test_every_task_end_to_end(run_tiny, steps_table, task):
    cfg, summary = run_tiny(f"task={task}")
    task_dir = Path(cfg.out_dir) / task
    assert task_dir.parent.parent == Path(cfg.results_root)
    assert re.fullmatch(r"demo_tiny_adm_dps_3steps_pag0_seed0_[0-9a-f]{8}", task_dir.parent.name)
    names = ["shapes_test_00000", "shapes_test_00001"]
    rows = check_task_folder(task_dir, names, measurement_size=8 if task == "sr4" else 32, frames=3)
    check_summary(summary, rows, images=2)
    assert json.loads((task_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    # the step size is the shapes row of the table, read straight from the YAML file
    assert summary["settings"]["zeta"] == steps_table["dps"]["shapes"]["tasks"][task]["zeta"]
    assert summary["config"]["task"]["name"] == task


def test_pag_run_and_the_measurement_files(run_tiny, steps_table):
    cfg, summary = run_tiny("task=box_inpaint", "pag.enabled=true", "data.limit=1")
    task_dir = Path(cfg.out_dir) / "box_inpaint"
    assert re.fullmatch(r"demo_tiny_adm_dps_3steps_pag2_seed0_[0-9a-f]{8}", cfg.name)
    row = steps_table["dps"]["shapes"]
    assert summary["settings"]["pag"]["layers"] == row["pag_layers"] == ["output_blocks.4.1"]
    assert summary["settings"]["pag"]["scale"] == row["tasks"]["box_inpaint"]["pag_scale"] == 2.0
    # the saved input is the masked, noisy image y = m * x + n, n ~ N(0, 0.05^2) (6.4 levels in 8 bits): the mask
    # is the one image 0's operator seed draws, a 16 x 16 hole at 32 px
    operator = build_operator(cfg.task, 32, image_streams(0, [0]).operator)
    mask = operator.mask[0, 0].numpy().astype(bool)
    assert (~mask).sum() == 16 * 16
    y = png(task_dir / "input" / "shapes_test_00000.png").astype(float)
    label = png(task_dir / "label" / "shapes_test_00000.png").astype(float)
    six_sigma = 6 * 0.05 * 127.5 + 1
    assert np.abs(y - label)[mask].max() <= six_sigma
    assert np.abs(y - 127.5)[~mask].max() <= six_sigma
