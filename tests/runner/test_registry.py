"""The solver registry: every registered solver is consistent with its conf file, its step table and its
constructor, restores a tiny problem through the runner and through the library, and is refused with the valid
choices when it does not fit the prior."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import yaml

import runner
from runner import CONF_DIR, SetupError
from solvers import SOLVERS, default_solver

#: the shipped tiny prior of each space (conf/prior/<name>.yaml)
TINY_PRIOR = {"pixel": "tiny_adm", "latent": "tiny_sd"}
PAPER = yaml.safe_load((CONF_DIR / "steps" / "paper.yaml").read_text())


def _conf(name: str) -> dict:
    return yaml.safe_load((CONF_DIR / "solver" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", list(SOLVERS))
def test_spec_matches_its_class_conf_file_and_table(name):
    spec = SOLVERS[name]
    signature = inspect.signature(spec.cls).parameters
    for arg in (*spec.params, *spec.options, "pag", "num_steps", "progress"):
        assert arg in signature, f"{name}: {arg} is not a constructor argument of {spec.cls.__name__}"
    assert list(signature)[:2] == ["prior", "operator"]
    conf = _conf(name)
    assert conf["name"] == name and "/_solver_base@_here_" in conf["defaults"]
    # keys every solver has (e.g. the reproduction switch ``reference``): outside conf/solver/, so not a choice
    shared = yaml.safe_load((CONF_DIR / "_solver_base.yaml").read_text())
    for key in (*spec.params, *spec.options):
        assert key in conf or key in shared, f"conf/solver/{name}.yaml (or conf/_solver_base.yaml) lacks {key}"
    # the table section exists and gives every step size, with and without PAG, for every task it lists
    assert spec.table in PAPER
    for dataset, row in PAPER[spec.table].items():
        assert isinstance(row["num_steps"], int) and row["pag_layers"], (name, dataset)
        for task, entry in row["tasks"].items():
            for param in spec.params:
                assert {param, f"{param}_pag"} <= set(entry), (name, dataset, task)
    assert callable(spec.cls.restore) and callable(spec.cls.step)
    assert list(inspect.signature(spec.cls.restore).parameters) == [
        "self", "y", "generator", "batch_size", "x_T", "callback", "callback_every"
    ]  # fmt: skip


def test_every_space_has_a_default_and_auto_picks_it():
    assert default_solver("pixel") == "dps" and default_solver("latent") == "psld"
    assert default_solver(False) == "dps" and default_solver(True) == "psld"
    assert runner.resolve_settings(runner.compose("prior=tiny_adm")).solver == "dps"
    assert runner.resolve_settings(runner.compose("prior=tiny_sd")).solver == "psld"
    assert runner.resolve_settings(runner.compose("prior=sd15", "solver=auto")).solver == "psld"
    assert runner.resolve_settings(runner.compose("prior=adm_ffhq", "data=ffhq", "solver=auto")).solver == "dps"


@pytest.mark.parametrize("name", list(SOLVERS))
def test_incompatible_prior_is_refused_at_start_up_with_the_valid_choices(name, tmp_path):
    spec = SOLVERS[name]
    other = "latent" if spec.space == "pixel" else "pixel"
    prior = TINY_PRIOR[other]
    cfg = runner.compose(f"solver={name}", f"prior={prior}", f"results_root={tmp_path}")
    with pytest.raises(SetupError) as info:
        runner.run(cfg)  # before any prior is loaded
    message = str(info.value)
    assert f"solver={name} needs a {'latent' if spec.space == 'latent' else 'pixel-space'} prior" in message
    valid_here = [n for n, s in SOLVERS.items() if s.space == other]
    for choice in [*(f"solver={n}" for n in valid_here), "solver=auto", TINY_PRIOR[spec.space]]:
        assert choice in message
    assert not list(tmp_path.rglob("*.png"))


def test_unknown_solver_lists_the_registry(tmp_path):
    cfg = runner.compose(f"results_root={tmp_path}")
    cfg.solver.name = "nope"
    with pytest.raises(SetupError) as info:
        runner.resolve_settings(cfg)
    assert all(f"solver={n}" in str(info.value) for n in ["auto", *SOLVERS])


@pytest.mark.parametrize("name", list(SOLVERS))
def test_every_solver_restores_through_the_runner(name, run_fast):
    spec = SOLVERS[name]
    cfg, summary = run_fast(f"solver={name}", f"prior={TINY_PRIOR[spec.space]}", "pag.enabled=true")
    assert cfg.solver.name == name and summary["settings"]["solver"] == name
    assert summary["counts"]["done"] == 2 and summary["settings"]["pag"] is not None
    assert np.isfinite(summary["metrics"]["psnr"]["mean"])


@pytest.mark.parametrize("name", list(SOLVERS))
def test_every_solver_restores_through_the_library(name):
    """spec.build with the shapes row of its table, then restore(y, generator) with the common keywords."""
    from operators import make_operator
    from operators.random import generators_from_seeds
    from priors.tiny import load_tiny_adm, load_tiny_sd
    from solvers import PAG

    spec = SOLVERS[name]
    prior = load_tiny_adm() if spec.space == "pixel" else load_tiny_sd()
    row = PAPER[spec.table]["shapes"]
    entry = row["tasks"]["box_inpaint"]
    op = make_operator("box_inpaint", image_size=32, hole=12, margin=4, generator=generators_from_seeds([0, 1]))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = op.measure(x, generators_from_seeds([2, 3]))
    pag = PAG(entry["pag_scale"], tuple(row["pag_layers"]))
    solver = spec.build(prior, op, {p: entry[f"{p}_pag"] for p in spec.params}, pag=pag, num_steps=3, progress=False)
    assert spec.accepts(prior) and solver.pag is pag
    seen = []
    x_T = torch.randn((2, *prior.sample_shape), generator=torch.Generator().manual_seed(4))
    out = solver.restore(y, generators_from_seeds([5, 6]), x_T=x_T, callback=seen.append, callback_every=1)
    assert out.shape == x.shape and bool(torch.isfinite(out).all()) and out.abs().max() <= 1
    assert [info.i for info in seen] == [0, 1, 2]
    again = solver.restore(y, generators_from_seeds([5, 6]), x_T=x_T)
    # x_T and the per-image generators fix the result (up to float rounding: PAG's shared prefix rounds its first
    # run differently, by ~1e-5; RED-diff's Adam divides by the root of its second moment and grew that to 1.0e-4 at
    # its box row's PAG scale 0.25)
    torch.testing.assert_close(out, again, rtol=0, atol=5e-4)
