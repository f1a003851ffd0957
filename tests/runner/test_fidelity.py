"""What the runner measures and scores: task settings at 512 px (ours and the reference's), pasted inpainting
outputs, labels at the evaluation size straight from the source image, the reproduction switch in summary.json."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import runner
from runner import build_operator, read_metrics_csv


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def measurement_size(task: str, size: int, reference: bool) -> int:
    cfg = runner.compose(f"task={task}")
    operator = build_operator(cfg.task, size, None, reference)
    return operator(torch.zeros(1, 3, size, size)).shape[-1]


def test_sr_at_512_measures_the_source_size_over_the_factor():
    """SD1.5 works at 512 px on FFHQ 256 images upsampled by 2: SR x8 must measure 256 / 8 = 32 px."""
    assert measurement_size("sr8", 512, reference=False) == 256 // 8
    assert measurement_size("sr4", 512, reference=False) == 256 // 4
    assert measurement_size("sr8", 256, reference=False) == 256 // 8
    # PSLD_PAG's SR x8 (Min-Jaewon/PSLD_PAG diffusion-posterior-sampling/configs/super_resolution_config_psld_8.yaml:
    # in_shape [1, 3, 512, 512], scale_factor 8) measures 64x64 at 512 px, what reference mode reproduces
    assert measurement_size("sr8", 512, reference=True) == 512 // 8


def test_reference_task_settings_at_512():
    """PSLD_PAG's configs at 512 px: box margin 16 (DPS's mask_generator default, box_inpainting_config_psld.yaml
    gives none), Gaussian sigma 3.0 with kernel 121 (gaussian_deblur_config_psld.yaml), random-mask p in [0.2, 0.8]
    (inpainting_config_psld.yaml); at other sizes the switch changes nothing."""
    params = {}
    for task in ("box_inpaint", "gaussian_deblur", "random_inpaint", "motion_deblur"):
        cfg = runner.compose(f"task={task}")
        params[task] = runner.operator_params(cfg.task, 512, reference=True)
        assert runner.operator_params(cfg.task, 256, reference=True) == runner.operator_params(cfg.task, 256)
    assert params["box_inpaint"] == {"hole": 256, "margin": 16}
    assert params["gaussian_deblur"] == {"kernel_size": 121, "sigma": 3.0}
    assert params["random_inpaint"] == {"prob_range": [0.2, 0.8]}
    assert params["motion_deblur"] == {"kernel_size": 121, "intensity": 0.5}


def test_reference_run_saves_pasted_outputs_and_scores_them(run_tiny):
    cfg, summary = run_tiny("task=box_inpaint", "solver.reference=true", "data.limit=1")
    folder = Path(cfg.out_dir) / "box_inpaint"
    name = "shapes_test_00000"
    mask = build_operator(cfg.task, 32, runner.image_streams(0, [0]).operator).mask[0, 0].numpy()[..., None]
    label, recon = png(folder / "label" / f"{name}.png"), png(folder / "recon" / f"{name}.png")
    pasted = png(folder / "pasted" / f"{name}.png")
    # mask * label + (1 - mask) * recon, pixel for pixel (PSLD_PAG stable-diffusion/scripts/inverse.py)
    np.testing.assert_array_equal(pasted, np.where(mask == 1, label, recon))
    assert (pasted != recon).any()
    (row,) = read_metrics_csv(folder / "metrics.csv")
    assert float(row["psnr"]) == pytest.approx(psnr(pasted, label), abs=1e-6)
    assert summary["metrics"]["recon"] == "pasted" and summary["reference"] is True
    assert summary["config"]["solver"]["reference"] is True
    assert "_ref_pag0_" in cfg.name  # its own folder: a default run's is not resumed into
    # scripts/evaluate.py scores what the run scored
    from evaluation import evaluate_folder, run_recon

    report = evaluate_folder(folder, recon=run_recon(folder), lpips=False, fid=False)
    assert report["rows"][0]["psnr"] == pytest.approx(float(row["psnr"]), abs=1e-9)


def test_default_run_scores_the_raw_sample_and_records_the_measurement(run_tiny):
    cfg, summary = run_tiny("task=box_inpaint", "data.limit=1")
    folder = Path(cfg.out_dir) / "box_inpaint"
    (row,) = read_metrics_csv(folder / "metrics.csv")
    label, recon = png(folder / "label" / "shapes_test_00000.png"), png(folder / "recon" / "shapes_test_00000.png")
    assert float(row["psnr"]) == pytest.approx(psnr(recon, label), abs=1e-6)
    assert summary["metrics"]["recon"] == "raw" and summary["reference"] is False
    assert (folder / "pasted" / "shapes_test_00000.png").is_file()  # both are saved
    _, sr = run_tiny("task=sr8", "data.limit=1")
    assert sr["measurement"] == {"shape": [4, 4], "working_size": 32, "source_size": 32, "factor_vs_source": 8.0}


def test_pasted_metrics_need_a_mask(run_tiny):
    with pytest.raises(runner.SetupError, match=r"metrics\.recon=pasted needs an inpainting task"):
        run_tiny("task=sr4", "metrics.recon=pasted")


def test_labels_are_the_source_image_at_the_evaluation_size(run_tiny, tmp_path):
    """The SD1.5 situation in small: a 16 px source image, a 32 px prior, metrics at 16 px. The label is the file
    itself (pixel for pixel), not the 32 px working image resized back, and PSNR compares the recon with it."""
    data = tmp_path / "images"
    data.mkdir()
    source = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(source).save(data / "face.png")
    cfg, summary = run_tiny("data=folder", f"data.path={data}", "data.dataset=shapes", "metrics.size=16")
    folder = Path(cfg.out_dir) / "box_inpaint"
    label = png(folder / "label" / "face.png")
    np.testing.assert_array_equal(label, source)
    round_trip = np.asarray(Image.fromarray(source).resize((32, 32), Image.BICUBIC).resize((16, 16), Image.BICUBIC))
    assert (round_trip != source).any()  # so the check above can fail
    recon16 = np.asarray(Image.open(folder / "recon" / "face.png").resize((16, 16), Image.BICUBIC))
    (row,) = read_metrics_csv(folder / "metrics.csv")
    assert float(row["psnr"]) == pytest.approx(psnr(recon16, source), abs=1e-6)
    assert summary["measurement"]["source_size"] == 16 and summary["metrics"]["size"] == 16


@pytest.mark.parametrize("reference", [False, True])
def test_psld_reference_upsamples_the_data_with_nearest(tiny_sd_folder, tmp_path, reference):
    """PSLD_PAG stable-diffusion/scripts/inverse.py: ``f.interpolate(img, opt.H)`` (nearest) from 256 to 512 px;
    here a 16 px file for the 32 px tiny latent prior. The default resizes with bicubic."""
    data = tmp_path / "images"
    data.mkdir()
    source = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(source).save(data / "face.png")
    cfg = runner.compose(
        f"results_root={tmp_path / 'results'}", "prior=tiny_sd", f"prior.source={tiny_sd_folder}", "data=folder",
        f"data.path={data}", "data.dataset=shapes", f"solver.reference={reference}",
    )  # fmt: skip
    exp = runner.Experiment(cfg)
    working = ((exp.data.load(exp.data.samples[0]).permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    nearest = source.repeat(2, axis=0).repeat(2, axis=1)
    bicubic = np.asarray(Image.fromarray(source).resize((32, 32), Image.BICUBIC))
    np.testing.assert_array_equal(working, nearest if reference else bicubic)


def test_pag_interval_from_the_config():
    settings = runner.resolve_settings(runner.compose("pag.scale=2", "pag.interval=[0,500]"))
    assert settings.pag.interval == (0.0, 500.0) and settings.to_dict()["pag"]["interval"] == [0.0, 500.0]
    name = runner.compose("pag.scale=2", "pag.interval=[0,500]").name
    assert re.fullmatch(r"demo_tiny_adm_dps_250steps_pag2i0-500_seed0_[0-9a-f]{8}", name)
    for bad in ("[5]", "[600,200]"):
        with pytest.raises(runner.SetupError, match="interval"):
            runner.resolve_settings(runner.compose("pag.scale=2", f"pag.interval={bad}"))
