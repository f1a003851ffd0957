"""Config composition: the paper's step sizes and PAG settings are selected for every solver x dataset x task,
command-line values win, incompatible combinations fail with the valid choices. Expected numbers are typed in
from the PAG paper's Tables 5 and 7, independently of conf/steps/paper.yaml."""

from __future__ import annotations

import copy
import functools
import re

import pytest
import yaml
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

import runner
from priors.adm import PAG_LAYERS
from runner import CONF_DIR, SetupError, compose, resolve_settings

TASKS = ("box_inpaint", "sr8", "gaussian_deblur", "motion_deblur")  # the paper's columns: inpaint, SR x8, Gauss, Motion

# Table 7 (DPS + PAG, ADM): (zeta DPS, zeta DPS+PAG, PAG scale)
TABLE_7 = {
    "ffhq": {
        "box_inpaint": (1.0, 1.0, 1.0),
        "sr8": (1.0, 1.0, 1.0),
        "gaussian_deblur": (1.0, 1.0, 1.0),
        "motion_deblur": (1.0, 1.0, 1.0),
    },
    "imagenet": {
        "box_inpaint": (1.0, 1.0, 2.0),
        "sr8": (1.0, 1.0, 2.0),
        "gaussian_deblur": (0.4, 0.4, 1.0),
        "motion_deblur": (0.6, 1.0, 2.0),
    },
}
# Table 5 (PSLD + PAG, SD1.5): (omega, gamma, PAG scale)
TABLE_5 = {
    "ffhq": {
        "box_inpaint": (0.15, 0.015, 4.0),
        "sr8": (0.7, 0.07, 4.0),
        "gaussian_deblur": (0.1, 0.01, 5.0),
        "motion_deblur": (0.15, 0.015, 4.0),
    },
    "imagenet": {
        "box_inpaint": (0.5, 0.05, 4.0),
        "sr8": (0.7, 0.07, 4.0),
        "gaussian_deblur": (0.1, 0.01, 5.0),
        "motion_deblur": (0.3, 0.03, 5.0),
    },
}
# PSLD without PAG: PSLD's own defaults (omega, gamma); box inpainting scripts use (0.1, 0.01)
PSLD_DEFAULTS = {
    "box_inpaint": (0.1, 0.01),
    "sr8": (1.0, 0.1),
    "gaussian_deblur": (1.0, 0.1),
    "motion_deblur": (1.0, 0.1),
}
DPS_PRIOR = {"ffhq": "adm_ffhq", "imagenet": "adm_imagenet"}


@functools.cache
def _composed(*overrides: str):
    return compose(*overrides)


def configure(prior: str, data: str, task: str, **updates):
    """The config of ``prior=<prior> data=<data> task=<task>`` plus ``updates`` (dotted keys), composed with few
    Hydra calls: the task group's node is composed once per task and swapped in (groups are independent)."""
    cfg = copy.deepcopy(_composed(f"prior={prior}", f"data={data}"))
    cfg.task = copy.deepcopy(_composed(f"task={task}").task)
    for key, value in updates.items():
        OmegaConf.update(cfg, key.replace("__", "."), value)
    return cfg


def table_settings(prior: str, data: str, task: str, **updates):
    return resolve_settings(configure(prior, data, task, **updates))


def settings(*overrides):
    return resolve_settings(compose(*overrides))


@pytest.mark.parametrize("dataset", ["ffhq", "imagenet"])
@pytest.mark.parametrize("task", TASKS)
def test_dps_table_7(dataset, task):
    zeta, zeta_pag, scale = TABLE_7[dataset][task]
    plain = table_settings(DPS_PRIOR[dataset], dataset, task)
    assert plain.solver == "dps" and plain.pag is None
    assert plain.step_sizes == {"zeta": zeta}
    assert plain.num_steps == 1000  # DPS: the full 1000-step DDPM chain
    guided = table_settings(DPS_PRIOR[dataset], dataset, task, pag__enabled=True)
    assert guided.step_sizes == {"zeta": zeta_pag}
    assert guided.pag.scale == scale
    layers = ("input_blocks.9.1",) if dataset == "ffhq" else ("middle_block.1", "output_blocks.2.1")
    assert guided.pag.layers == layers


def test_imagenet_dps_layers_are_the_ones_that_exist():
    # the paper lists input_blocks.9.1 too, which guided-diffusion's 256x256 unconditional UNet does not have
    guided = table_settings("adm_imagenet", "imagenet", "box_inpaint", pag__enabled=True)
    assert guided.pag.layers == PAG_LAYERS["imagenet_256_uncond"]["dps"]


@pytest.mark.parametrize("dataset", ["ffhq", "imagenet"])
@pytest.mark.parametrize("task", TASKS)
def test_psld_table_5(dataset, task):
    omega, gamma, scale = TABLE_5[dataset][task]
    guided = table_settings("sd15", dataset, task, pag__enabled=True)  # solver=auto picks PSLD for the latent prior
    assert guided.solver == "psld"
    assert guided.step_sizes == {"omega": omega, "gamma": gamma}
    assert guided.num_steps == 1000  # PSLD's default DDIM steps
    assert guided.pag.scale == scale
    assert guided.pag.layers == ("input_blocks.8.1.transformer_blocks.0.attn1",)
    plain = table_settings("sd15", dataset, task)
    assert plain.pag is None
    assert plain.step_sizes == dict(zip(("omega", "gamma"), PSLD_DEFAULTS[task]))


@pytest.mark.parametrize("solver,prior", [("dps", "adm_ffhq"), ("psld", "sd15")])
def test_tasks_outside_the_tables_borrow_their_columns(solver, prior):
    for borrowed, column in (("random_inpaint", "box_inpaint"), ("sr4", "sr8")):
        for dataset in ("ffhq", "imagenet"):
            a = table_settings(prior, dataset, borrowed, pag__enabled=True)
            b = table_settings(prior, dataset, column, pag__enabled=True)
            assert (a.step_sizes, a.pag.scale) == (b.step_sizes, b.pag.scale)


def test_command_line_values_win():
    s = settings("prior=adm_imagenet", "data=imagenet", "task=motion_deblur", "solver.zeta=0.5", "pag.scale=5")
    assert s.step_sizes == {"zeta": 0.5} and s.sources["zeta"] == "solver.zeta"
    assert s.pag.scale == 5.0 and s.pag.layers == ("middle_block.1", "output_blocks.2.1")
    s = settings(
        "prior=adm_imagenet", "data=imagenet", "task=motion_deblur", "pag.scale=5", "pag.layers=[middle_block.1]"
    )
    assert s.step_sizes == {"zeta": 1.0}  # the table's DPS+PAG zeta: PAG is on
    assert s.pag.layers == ("middle_block.1",)
    s = settings("prior=sd15", "data=ffhq", "task=sr8", "solver.gamma=0.2", "pag.enabled=true")
    assert s.step_sizes == {"omega": 0.7, "gamma": 0.2}


def test_pigdm_eta_is_a_step_table_value_per_task():
    """PiGDM's DDIM eta comes from the step table: the official 0 (NVlabs/RED-diff _configs/algo/pgdm.yaml) on the
    paper's rows, 1 on the tiny ADM's SR rows, where eta 0 leaves noise in half the validation images
    (docs/tuning.md); a command-line value wins."""
    for dataset in ("ffhq", "imagenet"):
        s = settings(f"prior=adm_{dataset}", f"data={dataset}", "solver=pigdm", "task=sr4")
        assert s.step_sizes == {"weight": 1.0, "eta": 0.0}
    for task, eta in (("sr4", 1.0), ("sr8", 1.0), ("box_inpaint", 0.0), ("gaussian_deblur", 0.0)):
        for pag in ("pag.enabled=false", "pag.enabled=true"):
            s = settings("prior=tiny_adm", "solver=pigdm", f"task={task}", pag)
            assert s.step_sizes["eta"] == eta and s.sources["eta"].endswith(
                f"shapes.tasks.{task}.eta" + "_pag" * ("true" in pag)
            )
    s = settings("prior=tiny_adm", "solver=pigdm", "task=sr4", "solver.eta=0.5")
    assert s.step_sizes["eta"] == 0.5 and s.sources["eta"] == "solver.eta"


def test_the_documented_sd15_command_composes():
    cfg = compose("task=motion_deblur", "prior=sd15", "pag.scale=5")
    s = resolve_settings(cfg)
    assert (s.solver, s.pag.scale) == ("psld", 5.0)
    assert re.fullmatch(r"demo_sd15_psld_250steps_pag5_seed0_[0-9a-f]{8}", cfg.name)  # demo data: the shapes row


def test_pag_switches():
    assert settings().pag is None
    assert table_settings("tiny_adm", "demo", "box_inpaint", pag__scale=0).pag is None
    # ours: the shapes row (re-tuned on validation images, docs/tuning.md), not a paper value
    assert table_settings("tiny_adm", "demo", "box_inpaint", pag__enabled=True).pag.scale == 2.0
    with pytest.raises(SetupError, match="contradictory"):
        table_settings("tiny_adm", "demo", "box_inpaint", pag__enabled=True, pag__scale=0)
    with pytest.raises(SetupError, match=">= 0"):
        table_settings("tiny_adm", "demo", "box_inpaint", pag__scale=-1)


def test_output_folder_is_a_function_of_the_config():
    cfg = compose("prior=adm_ffhq", "data=ffhq", "task=sr8", "pag.enabled=true", "seed=3")
    assert re.fullmatch(r"results/ffhq_adm_ffhq_dps_1000steps_pag1_seed3_[0-9a-f]{8}", cfg.out_dir)
    assert compose("tag=_zeta05").name.endswith("_zeta05")
    assert compose("data=folder", "data.path=/somewhere/celeba").name.startswith("folder_celeba_tiny_adm")


def _hash(name: str) -> str:
    return name.rsplit("_", 1)[1]


@pytest.mark.parametrize(
    "override",
    [
        "solver.zeta=0.5",
        "solver.clip_x0=false",
        "pag.layers=[middle_block.1]",
        "pag.adaptive_scale=0.1",
        "dtype=float64",
    ],
)
def test_every_setting_that_changes_results_changes_the_folder(override):
    base = compose("pag.scale=1")
    other = compose("pag.scale=1", override)
    readable = lambda name: name.rsplit("_", 1)[0]  # noqa: E731
    assert readable(other.name) == readable(base.name) and _hash(other.name) != _hash(base.name)


@pytest.mark.parametrize(
    "override", ["batch_size=2", "data.limit=2", "max_images=1", "show_progress=false", "threads=1", "device=cpu"]
)
def test_settings_that_do_not_change_results_keep_the_folder(override):
    assert compose(override).out_dir == compose().out_dir


def test_task_folder_gets_a_hash_only_for_changed_task_settings():
    assert runner.task_dir(compose("task=box_inpaint")).name == "box_inpaint"
    changed = compose("task=box_inpaint", "task.resolutions.32.hole=12")
    assert re.fullmatch(r"box_inpaint_[0-9a-f]{8}", runner.task_dir(changed).name)
    assert changed.name == compose("task=box_inpaint").name  # the experiment folder is shared across tasks


def test_the_step_row_follows_the_prior():
    own_photos = table_settings("tiny_adm", "folder", "box_inpaint", pag__enabled=True)
    assert (own_photos.dataset, own_photos.sources["dataset"]) == ("shapes", "prior.domain")
    assert own_photos.num_steps == 250 and own_photos.pag.layers == ("output_blocks.4.1",)  # the shapes row
    assert table_settings("adm_imagenet", "folder", "box_inpaint").dataset == "imagenet"
    sd = table_settings("sd15", "imagenet", "box_inpaint", pag__enabled=True)  # SD1.5: the data's row (Table 5)
    assert (sd.dataset, sd.sources["dataset"], sd.step_sizes["omega"]) == ("imagenet", "data.dataset", 0.5)
    forced = table_settings("tiny_adm", "demo", "box_inpaint", pag__enabled=True, steps__row="ffhq")
    assert (forced.dataset, forced.sources["dataset"], forced.num_steps) == ("ffhq", "steps.row", 1000)


def test_auto_solver_follows_the_prior():
    assert _composed("prior=sd15").solver.name == "psld"
    assert _composed("prior=adm_ffhq").solver.name == "dps"
    assert _composed().solver.name == "dps"


def test_solver_configs_share_the_base_keys_and_auto_has_the_defaults_keys():
    # each solver's file holds only its own keys (shared ones in conf/_solver_base.yaml); solver=auto accepts the
    # keys of every solver it may pick, so solver.zeta=... / solver.eta=... work with it
    base = set(yaml.safe_load((CONF_DIR / "_solver_base.yaml").read_text()))
    keys = {name: set(_composed(f"solver={name}").solver) for name in ("auto", "dps", "psld")}
    # reference: every solver's reproduction switch; restarts: best of N runs for any solver
    assert base == {"name", "num_steps", "reference", "restarts"}
    assert keys["dps"] == base | {"zeta", "clip_x0"}
    assert keys["psld"] >= base | {"omega", "gamma", "eta", "prompt", "cfg_scale"}
    assert keys["auto"] == keys["dps"] | keys["psld"]


@pytest.mark.parametrize(
    "overrides,valid",
    [
        (("prior=tiny_adm", "solver=psld"), ["solver=dps", "solver=auto", "sd15"]),
        (("prior=adm_ffhq", "solver=psld"), ["solver=dps", "sd15"]),
        (("prior=sd15", "solver=dps"), ["solver=psld", "adm_ffhq", "adm_imagenet", "tiny_adm"]),
    ],
)
def test_incompatible_solver_and_prior(overrides, valid):
    with pytest.raises(SetupError) as info:
        resolve_settings(_composed(*overrides))
    for choice in valid:
        assert choice in str(info.value)


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(MissingConfigException) as info:
        compose("task=denoise")
    for task in ("box_inpaint", "random_inpaint", "sr4", "sr8", "gaussian_deblur", "motion_deblur"):
        assert task in str(info.value)


@pytest.mark.parametrize(
    "task,size,expected",
    [
        ("box_inpaint", 256, {"hole": 128, "margin": 16}),
        ("box_inpaint", 512, {"hole": 256, "margin": 32}),
        ("box_inpaint", 32, {"hole": 16, "margin": 2}),
        ("sr8", 256, {"factor": 8}),
        ("sr8", 512, {"factor": 16}),
        ("sr4", 32, {"factor": 4}),
        ("gaussian_deblur", 256, {"kernel_size": 61, "sigma": 3.0}),
        ("gaussian_deblur", 512, {"kernel_size": 121, "sigma": 6.0}),  # the 256 px blur scaled by 2
        ("gaussian_deblur", 32, {"kernel_size": 9, "sigma": 1.0}),
        ("motion_deblur", 256, {"kernel_size": 61, "intensity": 0.5}),
        ("motion_deblur", 512, {"kernel_size": 121, "intensity": 0.5}),
        ("motion_deblur", 32, {"kernel_size": 9, "intensity": 0.5}),
        ("random_inpaint", 32, {"prob_range": [0.3, 0.7]}),
    ],
)
def test_operator_sizes_per_resolution(task, size, expected):
    cfg = _composed(f"task={task}")
    assert runner.operator_params(cfg.task, size) == expected
    assert cfg.task.noise.sigma == 0.05
