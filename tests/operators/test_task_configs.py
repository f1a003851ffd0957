"""The nonlinear task configs (conf/task/{phase_retrieval,hdr,nonlinear_deblur,custom}.yaml) and their step sizes
(conf/steps/paper.yaml) carry the references' published settings, written here from the reference files:

- DPS2022/diffusion-posterior-sampling configs/phase_retrieval_config.yaml (oversample 2.0, sigma 0.05, scale 1.0),
  configs/nonlinear_deblur_config.yaml (sigma 0.05, scale 0.3);
- zhangbingliang2019/DAPS configs/task/phase_retrieval.yaml, hdr.yaml, nonlinear_blur.yaml: "pixel" rows (lr 5e-5,
  2e-5, 1e-5) and "sd" rows (HMC: lr / steps / lr_min_ratio / momentum), hdr scale 2.
"""

from __future__ import annotations

import pytest
import torch

import runner
from operators import HighDynamicRange, PhaseRetrieval
from runner import SetupError
from runner.build import build_operator


def compose(*overrides: str):
    return runner.compose("prior=adm_ffhq", "data=ffhq", *overrides)


def test_phase_retrieval_task_is_dps_setting_at_256_px():
    op = build_operator(compose("task=phase_retrieval").task, 256, [torch.Generator().manual_seed(0)])
    assert isinstance(op, PhaseRetrieval)
    assert op.oversample == 2.0 and op.pad == 64 and op.convention == "dps" and op.noise_sigma == 0.05
    daps = build_operator(compose("task=phase_retrieval", "task.params.convention=daps").task, 256, None)
    assert daps.convention == "daps" and daps.pad == 64


def test_hdr_task_is_daps_setting():
    op = build_operator(compose("task=hdr").task, 256, None)
    assert isinstance(op, HighDynamicRange) and op.scale == 2.0 and op.noise_sigma == 0.05


def test_nonlinear_deblur_without_weights_stops_at_start_up_with_the_link(tmp_path):
    cfg = compose("task=nonlinear_deblur", f"task.params.weights={tmp_path / 'GOPRO_wVAE.pth'}")
    with pytest.raises(SetupError) as info:
        build_operator(cfg.task, 256, None)
    message = str(info.value)
    assert "https://drive.google.com/file/d/1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy" in message
    assert str(tmp_path / "GOPRO_wVAE.pth") in message
    with pytest.raises(SetupError, match="multiple of 128"):
        build_operator(cfg.task, 32, None)


@pytest.mark.parametrize(
    ("solver", "task", "expected"),
    [
        ("dps", "phase_retrieval", {"zeta": 1.0}),
        ("dps", "nonlinear_deblur", {"zeta": 0.3}),
        ("daps", "phase_retrieval", {"lr": 5e-5}),
        ("daps", "hdr", {"lr": 2e-5}),
        ("daps", "nonlinear_deblur", {"lr": 1e-5}),
    ],
)
def test_pixel_step_sizes_are_the_references(solver, task, expected):
    for pag in ("pag.enabled=false", "pag.enabled=true"):
        settings = runner.resolve_settings(compose(f"solver={solver}", f"task={task}", pag))
        assert settings.step_sizes == expected, (solver, task, pag)


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("phase_retrieval", {"lr": 1.10e-4, "mcmc_steps": 95, "lr_min_ratio": 0.027, "momentum": 0.47}),
        ("hdr", {"lr": 1.0e-5, "mcmc_steps": 45, "lr_min_ratio": 1.0, "momentum": 0.7}),
        ("nonlinear_deblur", {"lr": 1.0e-5, "mcmc_steps": 60, "lr_min_ratio": 1.0, "momentum": 0.8}),
    ],
)
def test_latent_daps_step_sizes_are_daps_sd_rows(task, expected):
    for dataset in ("ffhq", "imagenet"):
        cfg = runner.compose("prior=sd15", f"data={dataset}", "solver=latent_daps", f"task={task}")
        assert runner.resolve_settings(cfg).step_sizes == expected, dataset


@pytest.mark.parametrize("solver", ["dps", "daps"])
@pytest.mark.parametrize("task", ["phase_retrieval", "hdr"])
def test_tiny_prior_rows_exist(solver, task):
    settings = runner.resolve_settings(runner.compose("prior=tiny_adm", f"solver={solver}", f"task={task}"))
    assert settings.step_sizes and settings.num_steps > 0


def test_custom_task_names_no_operator_by_default():
    cfg = runner.compose("task=custom")
    assert cfg.task.operator is None and dict(cfg.task.kwargs) == {}
    cfg = runner.compose("task=custom", "task.operator=my_ops:Subsample", "+task.kwargs.factor=2")
    assert cfg.task.operator == "my_ops:Subsample" and cfg.task.kwargs.factor == 2
