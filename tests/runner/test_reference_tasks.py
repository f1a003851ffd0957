"""``solver.reference=true``: the task settings of each solver's reference code (``SolverSpec.reference_tasks``),
applied by the runner only with the switch, with the values written here from the reference files:

- DPS2022/diffusion-posterior-sampling ``guided_diffusion/measurements.py`` PhaseRetrievalOperator: the image in
  [-1, 1] as it is (convention dps);
- zhangbingliang2019/DAPS ``forward_operator/__init__.py`` PhaseRetrieval: (x + 1) / 2 first (convention daps);
  ``configs/task/inpainting_rand.yaml``: mask_prob_range [0.70, 0.71]; ``sampler.py``: x_start = sigma_max z;
- yuanzhi-zhu/DiffPIR ``main_ddpir_deblur.py`` / ``main_ddpir_sisr.py``: noise_level_img = 12.75 / 255, added as
  N(0, (2 noise_level_img)^2) to the image on [-1, 1]; ``main_ddpir_inpainting.py``: noise_level_img = 0,
  iter_num = 20, mask_prob_range [0.5, 0.5].
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import runner
from runner import SetupError
from runner.build import build_operator
from runner.config import operator_params, task_noise
from runner.identity import task_as_run
from runner.run import dry_run
from solvers import DAPS, SOLVERS

DIFFPIR_SIGMA = 2 * 12.75 / 255  # noise_level_img on [0, 1], doubled on [-1, 1]


def compose(*overrides: str):
    return runner.compose("prior=adm_ffhq", "data=ffhq", *overrides)


def operator(cfg, size: int = 256):
    """The operator the runner builds for ``cfg`` (its solver's reference settings with the switch on)."""
    return build_operator(cfg.task, size, None, bool(cfg.solver.reference), str(cfg.solver.name))


@pytest.mark.parametrize(
    ("solver", "reference", "convention"),
    [
        ("daps", "true", "daps"),
        ("dps", "true", "dps"),
        ("daps", "false", "dps"),  # the switch off: the task's default (DPS's convention)
        ("dps", "false", "dps"),
        ("reddiff", "false", "dps"),
    ],
)
def test_phase_retrieval_follows_the_solvers_reference_code_only_with_the_switch(solver, reference, convention):
    cfg = compose("task=phase_retrieval", f"solver={solver}", f"solver.reference={reference}")
    runner.validate(cfg)
    op = operator(cfg)
    assert op.convention == convention
    # the two conventions measure different things: DAPS's maps x to (x + 1) / 2 before the transform
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    padded = torch.nn.functional.pad(x if convention == "dps" else (x + 1) / 2, (64,) * 4)
    expected = torch.fft.fftshift(torch.fft.fft2(padded, norm="ortho").abs(), dim=(-2, -1))
    torch.testing.assert_close(op(x), expected, rtol=1e-5, atol=1e-4)


def test_latent_daps_reference_uses_the_daps_convention():
    cfg = runner.compose("prior=tiny_sd", "solver=latent_daps", "task=phase_retrieval", "solver.reference=true")
    runner.validate(cfg)
    assert operator(cfg, 64).convention == "daps"


def test_an_explicit_convention_wins_over_the_reference_codes():
    cfg = compose("task=phase_retrieval", "solver=daps", "solver.reference=true", "task.params.convention=dps")
    assert operator(cfg).convention == "dps"
    cfg = compose("task=phase_retrieval", "solver=dps", "solver.reference=true", "task.params.convention=daps")
    assert operator(cfg).convention == "daps"


def test_nonlinear_blur_convention_follows_the_reference_code():
    for solver, reference, convention in [("daps", True, "daps"), ("dps", True, "dps"), ("daps", False, None)]:
        cfg = compose("task=nonlinear_deblur", f"solver={solver}")
        params = operator_params(cfg.task, 256, reference, solver)
        assert params.get("convention") == convention  # None: left to the operator's default (dps)


@pytest.mark.parametrize("task", ["gaussian_deblur", "motion_deblur", "sr4", "sr8"])
def test_diffpir_reference_measures_with_its_official_noise_level(task):
    on = compose(f"task={task}", "solver=diffpir", "solver.reference=true")
    off = compose(f"task={task}", "solver=diffpir")
    assert operator(on).noise_sigma == pytest.approx(DIFFPIR_SIGMA) == pytest.approx(0.1)
    assert operator(off).noise_sigma == 0.05
    # the step count stays the table's (100: main_ddpir_deblur.py / main_ddpir_sisr.py iter_num = 100)
    assert runner.resolve_settings(on).num_steps == runner.resolve_settings(off).num_steps == 100


@pytest.mark.parametrize("task", ["box_inpaint", "random_inpaint"])
def test_diffpir_reference_inpaints_noiseless_in_20_steps(task):
    on = compose(f"task={task}", "solver=diffpir", "solver.reference=true")
    off = compose(f"task={task}", "solver=diffpir")
    assert operator(on).noise_sigma == 0.0 and operator(off).noise_sigma == 0.05
    settings = runner.resolve_settings(on)
    assert settings.num_steps == 20 and "reference" in settings.sources["num_steps"]
    assert runner.resolve_settings(off).num_steps == 100
    # an explicit step count wins
    assert runner.resolve_settings(compose(f"task={task}", "solver=diffpir", "solver.reference=true",
                                           "solver.num_steps=7")).num_steps == 7  # fmt: skip
    # DiffPIR's rho_t floors sigma_y at 0.001 (main_ddpir_inpainting.py: sigma = max(0.001, noise_level_img))
    prior = runner.build_prior(runner.compose("prior=tiny_adm").prior, torch.device("cpu"), torch.float32)
    solver = SOLVERS["diffpir"].build(prior, operator(on, 32), {"lam": 1.0, "zeta": 1.0}, num_steps=20)
    assert solver.sigma_y == 0.001


def test_random_inpainting_masks_of_the_reference_codes():
    def dropped(cfg) -> list[float]:
        op = build_operator(cfg.task, 256, [torch.Generator().manual_seed(s) for s in range(4)],
                            bool(cfg.solver.reference), str(cfg.solver.name))  # fmt: skip
        return (1 - op.mask.float().mean(dim=(1, 2, 3))).tolist()

    base = ("task=random_inpaint", "solver.reference=true")
    assert all(f == pytest.approx(0.5, abs=1 / 256**2) for f in dropped(compose(*base, "solver=diffpir")))
    assert all(0.70 - 1e-4 <= f <= 0.71 for f in dropped(compose(*base, "solver=daps")))
    # DPS's reference is the task's own (DPS configs/inpainting_config.yaml: mask_prob_range [0.3, 0.7])
    assert operator_params(compose(*base, "solver=dps").task, 256, True, "dps")["prob_range"] == [0.3, 0.7]
    assert operator_params(compose("task=random_inpaint", "solver=daps").task, 256)["prob_range"] == [0.3, 0.7]


def test_the_recorded_task_is_the_task_as_run():
    cfg = compose("task=random_inpaint", "solver=diffpir", "solver.reference=true")
    task = task_as_run(cfg.task, 256, True, "diffpir")
    assert task["params"]["prob_range"] == [0.5, 0.5] and task["noise"] == {"name": "gaussian", "sigma": 0.0}
    assert task_as_run(cfg.task, 256)["noise"] == {"name": "gaussian", "sigma": 0.05}
    assert task_noise(cfg.task, False, "diffpir") == {"name": "gaussian", "sigma": 0.05}


def test_the_switch_is_refused_for_solvers_that_reproduce_no_code_and_taken_by_the_others():
    with pytest.raises(SetupError, match=r"solver=reddiff has no reference mode"):
        runner.validate(compose("solver=reddiff", "solver.reference=true"))
    for solver in ("dps", "diffpir", "daps"):
        runner.validate(compose(f"solver={solver}", "solver.reference=true"))
    assert {n for n, spec in SOLVERS.items() if spec.has_reference_mode} == {
        "dps", "diffpir", "psld", "daps", "latent_daps", "resample",
    }  # fmt: skip


def test_daps_reference_start_is_the_official_sigma_max_z():
    from priors.adm import ADMPrior

    prior = ADMPrior.from_preset("test", init="random", generator=torch.Generator().manual_seed(0)).eval()
    z = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ours, official = DAPS(prior, None, num_steps=4), DAPS(prior, None, num_steps=4, reference=True)
    # the first annealing level: sigma_max = 100 snapped to a training timestep t_0, sigma = sqrt((1 - abar) / abar)
    abar = float(prior.schedule.alphas_cumprod[official.timesteps[0]])
    sigma_0 = math.sqrt((1 - abar) / abar)
    assert sigma_0 == pytest.approx(100.0, rel=0.05)
    torch.testing.assert_close(official.start(z), sigma_0 * z)
    torch.testing.assert_close(ours.start(z), math.sqrt(1 + sigma_0**2) * z)
    built = SOLVERS["daps"].build(prior, None, {"lr": 1e-4}, num_steps=4, options={"reference": True})
    assert built.reference is True


def test_dry_run_shows_the_reference_settings_and_their_source(tiny_checkpoint, tmp_path):
    cfg = runner.compose(
        f"prior.checkpoint={tiny_checkpoint}", f"results_root={tmp_path / 'results'}", "data.limit=1",
        "solver=diffpir", "task=random_inpaint", "solver.reference=true",
    )  # fmt: skip
    text = dry_run(cfg)
    assert re.search(r"solver\.num_steps +20 +<- solver\.reference \(diffpir's reference code\)", text)
    assert re.search(r"task noise +\{'name': 'gaussian', 'sigma': 0\.0\} +<- solver\.reference", text)
    assert "'prob_range': [0.5, 0.5]" in text
