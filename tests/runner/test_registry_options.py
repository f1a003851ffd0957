"""The registries are the only source: a solver's options and their checks come from its constructor, ``solver=auto``
from the registry's order, a prior family from ``runner.priors.PRIORS``; a solver or a prior family added at
runtime works without any other edit."""

from __future__ import annotations

import inspect
from typing import Literal

import pytest
import torch
import yaml
from hydra.core.config_store import ConfigStore

import runner
from runner import CONF_DIR, PRIORS, PriorFamily, SetupError
from runner.data import path_variable
from runner.priors import prior_needs
from solvers import DAPS, DDNM, DPS, PSLD, SOLVERS, Allowed, DiffPIR, LatentDAPS, PiGDM, REDDiff, ReSample, SolverSpec
from solvers.registry import constructor_options

#: each shipped solver's options as the constructors list them (written out by hand from solvers/*.py)
SHIPPED_OPTIONS = {
    "dps": {"clip_x0", "reference"},
    "diffpir": {"sigma_y", "clip_x0", "cg_max_iter", "cg_tol"},
    "psld": {
        "eta", "prompt", "cfg_scale", "noisy_measurement_loss", "stochastic_encoder", "empty_prompt_cfg", "reference",
    },
    "daps": {
        "tau", "ode_steps", "mcmc_steps", "lr_min_ratio", "sigma_max", "sigma_min", "ode_sigma_min", "rho", "mc_algo",
        "momentum", "grad_clip", "reference",
    },
    "ddnm": {"sigma_y", "travel_length", "travel_repeat", "pinv_rcond", "pinv_max_iter", "pinv_tol"},
    "pigdm": {"eta", "sigma_y", "solve_max_iter", "solve_tol"},
    "latent_daps": {
        "tau", "ode_steps", "sigma_max", "sigma_min", "ode_sigma_min", "rho", "mc_algo", "grad_clip", "prompt",
        "cfg_scale", "reference",
    },
    "reddiff": {"obs_weight", "weight", "sigma_x0", "init"},
    "resample": {
        "travel_steps", "pixel_lr", "latent_lr", "latent_patience", "tol", "weight_decay", "final_latent", "reference",
    },
}  # fmt: skip
#: what the runner passes itself, and DPS / DiffPIR / DAPS's class labels (library use only)
NOT_SETTINGS = {"prior", "operator", "pag", "num_steps", "progress", "cond"}


@pytest.mark.parametrize("name", list(SOLVERS))
def test_options_are_the_constructors_keyword_parameters(name):
    spec = SOLVERS[name]
    assert set(spec.options) == SHIPPED_OPTIONS[name]
    parameters = inspect.signature(spec.cls).parameters
    assert set(spec.options) == set(parameters) - NOT_SETTINGS - set(spec.params)
    for option in spec.option_specs.values():
        assert option.default == parameters[option.name].default  # no class declares option_defaults() yet


@pytest.mark.parametrize("name", list(SOLVERS))
def test_conf_files_give_the_constructors_defaults(name):
    """conf/solver/<name>.yaml, read as YAML, sets each option it lists to the constructor's default."""
    conf = yaml.safe_load((CONF_DIR / "solver" / f"{name}.yaml").read_text())
    for option in SOLVERS[name].option_specs.values():
        if option.name in conf:
            assert conf[option.name] == option.default, (name, option.name)


def test_option_types_from_annotations_and_hooks():
    class Toy:
        def __init__(
            self,
            prior,
            operator=None,
            step: float = 1.0,
            *,
            flag: bool = False,
            count: int = 3,
            scale: float | None = None,
            mode: Literal["a", "b"] = "a",
            name: str = "x",
            untyped=0.5,
            cond: object | None = None,
            num_steps: int = 10,
            pag=None,
            progress: bool = True,
        ):
            pass

    options = constructor_options(Toy, exclude=(*NOT_SETTINGS, "step"), constraints={"count": Allowed(low=1)})
    assert list(options) == ["flag", "count", "scale", "mode", "name", "untyped"]
    got = {n: (o.kind, o.nullable, o.choices, o.low, o.default) for n, o in options.items()}
    assert got == {
        "flag": (bool, False, None, None, False),
        "count": (int, False, None, 1, 3),
        "scale": (float, True, None, None, None),
        "mode": (str, False, ("a", "b"), None, "a"),
        "name": (str, False, None, None, "x"),
        "untyped": (float, False, None, None, 0.5),
    }

    class Variant(Toy):
        """Defaults kept as class data (the hook the registry reads before the signature)."""

        @classmethod
        def option_defaults(cls):
            return {"count": 7, "mode": "b"}

    variant = constructor_options(Variant, exclude=(*NOT_SETTINGS, "step"))
    assert (variant["count"].default, variant["mode"].default, variant["flag"].default) == (7, "b", False)

    class Required:
        def __init__(self, prior, operator, needed: float):
            pass

    with pytest.raises(TypeError, match="needed"):
        constructor_options(Required, exclude=NOT_SETTINGS)
    with pytest.raises(ValueError, match="not options"):
        SolverSpec(cls=Toy, space="pixel", params=("step",), table="toy", constraints={"nope": Allowed(low=0)})


def test_the_shipped_classes_are_registered():
    assert [SOLVERS[n].cls for n in SHIPPED_OPTIONS] == [
        DPS,
        DiffPIR,
        PSLD,
        DAPS,
        DDNM,
        PiGDM,
        LatentDAPS,
        REDDiff,
        ReSample,
    ]


@pytest.mark.parametrize(
    "overrides,message",
    [
        # options validated before this change by a hand-kept list
        (("solver.eta=2",), "solver.eta=2: a number >= 0 and <= 1"),
        (("solver.clip_x0=1",), "solver.clip_x0=1: true or false"),
        (("prior=tiny_sd", "solver.cfg_scale=-1"), "solver.cfg_scale=-1: a number >= 0"),
        # DiffPIR's and DAPS's options, not validated before
        (("solver=diffpir", "solver.cg_max_iter=0"), "solver.cg_max_iter=0: an integer >= 1"),
        (("solver=diffpir", "solver.sigma_y=-0.1"), "solver.sigma_y=-0.1: a number >= 0 or null"),
        (("solver=daps", "solver.mc_algo=gibbs"), "solver.mc_algo=gibbs: one of langevin, hmc"),
        (("solver=daps", "solver.ode_steps=2.5"), "solver.ode_steps=2.5: an integer >= 1"),
        (("solver=daps", "solver.rho=fast"), "solver.rho=fast: a number"),
        (("solver=daps", "solver.grad_clip=off"), "solver.grad_clip=off: a number or null"),
        (("prior=tiny_sd", "solver=latent_daps", "solver.prompt=1"), "solver.prompt=1: a string"),
        # latent_daps takes momentum as a step size, daps as an option: each is checked by its own rule
        (("prior=tiny_sd", "solver=latent_daps", "solver.momentum=-1"), "solver.momentum=-1: a number >= 0 or null"),
        (("solver=daps", "solver.momentum=null"), "solver.momentum=null: a number"),
    ],
)
def test_every_solvers_options_are_checked(overrides, message):
    with pytest.raises(SetupError) as info:
        runner.validate(runner.compose(*overrides))
    assert str(info.value) == message


@pytest.mark.parametrize("name", list(SOLVERS))
def test_the_shipped_settings_pass(name):
    prior = "tiny_adm" if SOLVERS[name].space == "pixel" else "tiny_sd"
    runner.validate(runner.compose(f"solver={name}", f"prior={prior}"))


# -- solver=auto ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prior,expected", [("tiny_adm", "dps"), ("tiny_sd", "psld")])
def test_auto_is_the_registry_default_with_its_conf_values(prior, expected):
    """The first registered solver of the prior's space, holding the same values as ``solver=<it>``."""
    assert next(n for n, s in SOLVERS.items() if s.space == ("latent" if prior == "tiny_sd" else "pixel")) == expected
    auto = runner.compose(f"prior={prior}")
    explicit = runner.compose(f"prior={prior}", f"solver={expected}")
    assert auto.solver.name == expected
    assert {k: auto.solver[k] for k in explicit.solver} == dict(explicit.solver)
    assert not (CONF_DIR / "solver" / "auto.yaml").exists()  # no file names the defaults


# -- a solver added at runtime ----------------------------------------------------------------------------------
class Sharpen:
    """A test solver: returns y (a real one restores; the runner only builds it here)."""

    def __init__(
        self,
        prior,
        operator=None,
        kappa: float = 1.0,
        *,
        num_steps: int = 10,
        pag=None,
        progress: bool = True,
        blend: float = 0.5,
        passes: int = 2,
        mode: Literal["soft", "hard"] = "soft",
        clamp: bool = True,
    ):
        self.prior, self.operator, self.pag, self.kappa, self.num_steps = prior, operator, pag, kappa, num_steps
        self.blend, self.passes, self.mode, self.clamp = blend, passes, mode, clamp

    def step(self, *args):  # pragma: no cover - never run here
        raise NotImplementedError

    def restore(self, y, generator, *, batch_size=None, x_T=None, callback=None, callback_every=0):
        return y


SHARPEN = SolverSpec(
    cls=Sharpen, space="pixel", params=("kappa",), table="sharpen", constraints={"blend": Allowed(0, 1)}
)


@pytest.fixture
def sharpen_registered():
    """``sharpen`` in SOLVERS and its conf node (what conf/solver/sharpen.yaml would hold), removed afterwards."""
    store = ConfigStore.instance()
    node = {
        "name": "sharpen",
        "num_steps": None,  # the keys every solver's node has (conf/solver/_base.yaml)
        "reference": False,
        "kappa": None,
        "blend": 0.5,
        "passes": 2,
        "mode": "soft",
        "clamp": True,
    }
    store.store(group="solver", name="sharpen", node=node)
    SOLVERS["sharpen"] = SHARPEN
    try:
        yield
    finally:
        del SOLVERS["sharpen"]
        store.repo["solver"].pop("sharpen.yaml", None)


def test_a_runtime_solver_gets_its_option_checks(sharpen_registered):
    cases = {
        "solver.blend=2": "solver.blend=2: a number >= 0 and <= 1",
        "solver.passes=two": "solver.passes=two: an integer",
        "solver.mode=medium": "solver.mode=medium: one of soft, hard",
        "solver.clamp=maybe": "solver.clamp=maybe: true or false",
        "solver.kappa=-1": "solver.kappa=-1: a number >= 0 or null",
    }
    for override, message in cases.items():
        with pytest.raises(SetupError) as info:
            runner.validate(runner.compose("solver=sharpen", override))
        assert str(info.value) == message
    runner.validate(runner.compose("solver=sharpen"))


def test_a_runtime_solver_is_selectable_and_built(sharpen_registered):
    cfg = runner.compose("solver=sharpen", "solver.kappa=0.25", "solver.num_steps=4", "solver.mode=hard")
    settings = runner.resolve_settings(cfg)
    assert (settings.solver, settings.step_sizes, settings.num_steps) == ("sharpen", {"kappa": 0.25}, 4)
    identity = runner.experiment_identity(cfg, settings, 32)
    assert identity["solver"] == {"name": "sharpen", "blend": 0.5, "passes": 2, "mode": "hard", "clamp": True}
    prior = runner.build_prior(cfg.prior, torch.device("cpu"), torch.float32)
    operator = runner.build_operator(cfg.task, 32, None)
    solver = runner.build_solver(settings, cfg.solver, prior, operator, progress=False)
    assert isinstance(solver, Sharpen)
    assert (solver.kappa, solver.num_steps, solver.mode, solver.passes, solver.blend) == (0.25, 4, "hard", 2, 0.5)


def test_auto_follows_the_registry_order(sharpen_registered):
    """Declared first for pixel priors, ``sharpen`` becomes their ``solver=auto``, with its keys; latent priors keep
    theirs."""
    shipped = dict(SOLVERS)
    SOLVERS.clear()
    SOLVERS.update({"sharpen": shipped.pop("sharpen"), **shipped})
    try:
        cfg = runner.compose("prior=tiny_adm", "solver.passes=5")
        assert cfg.solver.name == "sharpen" and cfg.solver.passes == 5
        assert (
            runner.resolve_settings(runner.compose("prior=tiny_adm", "solver.kappa=1", "solver.num_steps=3")).solver
            == "sharpen"
        )
        assert runner.compose("prior=tiny_sd").solver.name == "psld"
    finally:
        SOLVERS.clear()
        SOLVERS.update(shipped | {"sharpen": SHARPEN})
    assert runner.compose("prior=tiny_adm").solver.name == "dps"


# -- prior families ---------------------------------------------------------------------------------------------
def test_unknown_prior_kind_names_the_families():
    cfg = runner.compose("prior.kind=nope")
    with pytest.raises(SetupError) as info:
        runner.build_prior(cfg.prior, torch.device("cpu"), torch.float32)
    assert str(info.value) == "prior.kind='nope' is not known; valid: adm (pixel space), sd (latent Stable Diffusion)"
    assert prior_needs(cfg.prior) == []


def test_a_runtime_prior_family_is_built_and_fetched_through_the_registry(monkeypatch, tmp_path):
    built = []
    marker = object()
    need = runner.Need("prior.checkpoint", "toy weights", tmp_path / "toy.pt", None)

    def build(prior_cfg, device, dtype, offline, prefetch):
        built.append((str(prior_cfg.name), device, dtype, offline, prefetch))
        return marker

    monkeypatch.setitem(PRIORS, "toy", PriorFamily(build, lambda prior_cfg: [need], "a test family"))
    cfg = runner.compose("prior.kind=toy", "offline=true")
    assert runner.build_prior(cfg.prior, torch.device("cpu"), torch.float64, offline=True) is marker
    assert built == [
        ("tiny_adm", torch.device("cpu"), torch.float64, True, "python scripts/fetch_weights.py prior=tiny_adm")
    ]
    assert runner.run_needs(cfg)[0] is need
    with pytest.raises(SetupError, match=r"toy \(a test family\)"):
        runner.build_prior(runner.compose("prior.kind=other").prior, torch.device("cpu"), torch.float32)


# -- data sets ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data,variable", [("ffhq", "FFHQ_DIR"), ("imagenet", "IMAGENET_VAL_DIR"), ("demo", None)])
def test_a_data_sets_variable_is_read_from_its_conf_file(data, variable):
    assert path_variable(runner.compose(f"data={data}").data) == variable
    assert path_variable(runner.compose("data=folder", "data.path=/somewhere/ffhq").data) is None
