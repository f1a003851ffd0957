"""scripts/evaluate.py on a finished run: it reproduces the run's metrics and reports KID / FID on its features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner import read_metrics_csv

from .conftest import load_script

SHAPES_EXTRACTOR = "shapes (evaluation/shapes_features32.safetensors, 128-d)"


def test_evaluate_script_reproduces_metrics_csv(run_tiny, capsys):
    cfg, _ = run_tiny("task=gaussian_deblur")
    task_dir = Path(cfg.out_dir) / "gaussian_deblur"
    evaluate = load_script("evaluate.py")
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


#: a user's own extractor: 4x4 average pooling, 48-d (a 3072-d torch.nn.Flatten makes FID's matrix square root of a
#: 3072 x 3072 covariance take most of this test's time, and tests nothing more)
POOLED_FEATURES = """import torch


class Pooled(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
"""


def test_evaluate_script_reports_kid_and_fid_on_shapes_features(run_tiny, capsys, tmp_path, monkeypatch):
    cfg, summary = run_tiny("task=box_inpaint", "data.limit=4")
    task_dir = Path(cfg.out_dir) / "box_inpaint"
    evaluate = load_script("evaluate.py")
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
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "evaluate_test_pooled.py").write_text(POOLED_FEATURES)
    monkeypatch.syspath_prepend(tmp_path / "modules")
    assert evaluate.main([str(task_dir), "--no-lpips", "--features", "evaluate_test_pooled:Pooled"]) == 0
    pooled = json.loads((task_dir / "evaluation.json").read_text())
    assert pooled["features"] == "evaluate_test_pooled:Pooled" and pooled["fid"]["value"] != report["fid"]["value"]
