"""The experiment pipeline end to end on the CPU with a tiny random ADM: layout, rows, summary, subprocess runs."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runner import build_operator, image_streams, read_metrics_csv

REPO = Path(__file__).resolve().parents[2]
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


def test_evaluate_script_reproduces_metrics_csv(run_tiny, capsys):
    cfg, _ = run_tiny("task=gaussian_deblur")
    task_dir = Path(cfg.out_dir) / "gaussian_deblur"
    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "scripts" / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    assert evaluate.main([str(task_dir), "--no-fid"]) == 0
    stdout = capsys.readouterr().out
    rows = {r["name"]: r for r in read_metrics_csv(task_dir / "metrics.csv")}
    evaluated = read_metrics_csv(task_dir / "evaluation.csv")
    assert len(evaluated) == 2
    for r in evaluated:
        assert float(r["psnr"]) == pytest.approx(float(rows[r["name"]]["psnr"]), abs=1e-9)
        assert float(r["ssim"]) == pytest.approx(float(rows[r["name"]]["ssim"]), abs=1e-9)
    report = json.loads((task_dir / "evaluation.json").read_text())
    assert "alexnet-owt-7be5be79.pth" in report["lpips"]["unavailable"]
    assert "2 images | PSNR" in stdout and "LPIPS unavailable: " in stdout


def test_evaluate_script_reports_kid_and_fid_on_shapes_features(run_tiny, capsys):
    cfg, summary = run_tiny("task=box_inpaint", "data.limit=4")
    task_dir = Path(cfg.out_dir) / "box_inpaint"
    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "scripts" / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    assert evaluate.main([str(task_dir), "--no-lpips"]) == 0  # features: the run's (shapes)
    stdout = capsys.readouterr().out
    report = json.loads((task_dir / "evaluation.json").read_text())
    extractor = SHAPES_EXTRACTOR
    assert report["features"] == report["fid"]["extractor"] == report["kid"]["extractor"] == extractor
    # the same files, features and seed as the run: the run's values
    assert report["fid"]["value"] == pytest.approx(summary["metrics"]["fid"]["value"], rel=1e-9)
    assert report["kid"]["value"] == pytest.approx(summary["metrics"]["kid"]["value"], rel=1e-9, abs=1e-12)
    assert report["kid"]["subset_size"] == 2
    kid = f"KID {report['kid']['value']:.4f} ± {report['kid']['std']:.4f}"
    assert f"FID {report['fid']['value']:.2f} | {kid} [features: {extractor}]" in stdout
    # a second extractor by import path: any torch module from images to features
    assert evaluate.main([str(task_dir), "--no-lpips", "--features", "torch.nn:Flatten"]) == 0
    pixels = json.loads((task_dir / "evaluation.json").read_text())
    assert pixels["features"] == "torch.nn:Flatten" and pixels["fid"]["value"] != report["fid"]["value"]


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
