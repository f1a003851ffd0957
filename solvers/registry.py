"""The solver registry: every posterior sampler declared once, with what the runner needs to know about it.

A solver is a class constructed as ``Cls(prior, operator, **step_sizes, pag=..., num_steps=..., progress=...,
**options)`` whose ``restore(y, generator, *, batch_size=None, x_T=None, callback=None, callback_every=0)``
returns images in [-1, 1], and whose step is written over a ``NoisePredictor`` (so PAG, CFG + PAG and the shared
prefix come with it). The runner (config checks, ``solver=auto``, building), ``sample`` and
the benchmark read this table; nothing else branches on a solver's name. A solver's options (and the checks of
their values, ``runner.validate``) are read from its constructor's signature: nothing re-lists them.

Adding a solver: its module, its entry in ``SOLVERS``, its ``conf/solver/<name>.yaml`` (its own keys only; the
shared ones are in ``conf/_solver_base.yaml``) and its rows in ``conf/steps/*.yaml`` under ``table``.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

from operators import CAPABILITIES, Operator
from priors import Prior

from .bare import (
    BareStep,
    ddnm_bare_step,
    dps_bare_step,
    pigdm_bare_step,
    psld_bare_step,
    reddiff_bare_step,
    resample_bare_step,
)
from .chain import Solver
from .daps import DAPS, MC_ALGOS, LatentDAPS
from .ddnm import DDNM
from .diffpir import DiffPIR
from .dps import DPS
from .guidance import PAG
from .pigdm import PiGDM
from .psld import PSLD
from .reddiff import REDDiff
from .resample import ReSample

Space = Literal["pixel", "latent"]
SPACES: tuple[Space, ...] = ("pixel", "latent")
#: how data are resized to the prior's size (``runner.data.RESAMPLE``)
Resample = Literal["bicubic", "nearest"]


#: constructor arguments that are not settings of a conf file: what the runner passes itself (the prior, the
#: operator, PAG, the number of steps, the progress bar) and what only library code passes (``cond``: class labels)
NOT_OPTIONS = frozenset({"prior", "operator", "pag", "num_steps", "progress", "cond"})


@dataclass(frozen=True)
class Allowed:
    """What a solver allows for one option beyond its type: an inclusive range, or a fixed set of choices."""

    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class SolverOption:
    """One setting of a solver, read from its constructor: keyword, effective default and type (``bool``, ``int``,
    ``float``, ``str``, or ``object`` when the annotation names none of them), ``nullable`` for ``X | None``, and
    what the spec's ``constraints`` allow besides (a ``Literal[...]`` annotation gives its ``choices`` itself)."""

    name: str
    default: Any
    kind: type
    nullable: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class ReferenceTask:
    """What a solver's reference code runs for one task, applied by the runner with ``solver.reference=true`` (and
    only then): ``params`` replace the task's operator arguments (after ``resolutions`` / ``reference_resolutions``);
    ``fill`` gives arguments the task leaves null (an explicit value, e.g. on the command line, wins);
    ``noise_sigma`` replaces the measurement noise by Gaussian noise of that std on [-1, 1] (0: none);
    ``num_steps`` replaces the step table's number of steps (``solver.num_steps`` given explicitly wins)."""

    params: Mapping[str, Any] = field(default_factory=dict)
    fill: Mapping[str, Any] = field(default_factory=dict)
    noise_sigma: float | None = None
    num_steps: int | None = None


NO_REFERENCE_TASK = ReferenceTask()

# The reference codes' task settings (``ReferenceTask``; docs/solvers.md "Settings against the official code").
#: Fourier phase retrieval's convention (operators/phase_retrieval.py) of each reference code
PHASE_RETRIEVAL_DPS = ReferenceTask(fill={"convention": "dps"})  # DPS2022 PhaseRetrievalOperator: x in [-1, 1]
PHASE_RETRIEVAL_DAPS = ReferenceTask(fill={"convention": "daps"})  # DAPS PhaseRetrieval: (x + 1) / 2 first
#: the learned blur's kernel code (operators/nonlinear_blur.py): DPS draws one per call, DAPS fixes one (seed 0)
NONLINEAR_BLUR_DPS = ReferenceTask(fill={"convention": "dps"})
NONLINEAR_BLUR_DAPS = ReferenceTask(fill={"convention": "daps"})
#: yuanzhi-zhu/DiffPIR main_ddpir_deblur.py / main_ddpir_sisr.py: noise_level_img = 12.75 / 255 on [0, 1], added
#: as N(0, (2 noise_level_img)^2) on [-1, 1]; main_ddpir_inpainting.py: noise_level_img = 0 and iter_num = 20
DIFFPIR_NOISY = ReferenceTask(noise_sigma=0.1)
DIFFPIR_INPAINT = ReferenceTask(noise_sigma=0.0, num_steps=20)


@dataclass(frozen=True)
class SolverSpec:
    """One registered solver.

    cls: the solver class. space: the priors it runs on (``pixel`` or ``latent``, i.e. ``prior.is_latent``).
    params: its step-size arguments, resolved from the step table (``<param>`` / ``<param>_pag``) unless given.
    table: its section of ``conf/steps/<table>.yaml``.
    constraints: bounds or choices of options that their type does not say (PSLD's ``eta`` in [0, 1]).

    Its options (``option_specs``; their names: ``options``) are the constructor's other named parameters (neither
    ``params`` nor ``NOT_OPTIONS``) with their type hints and defaults, a default overridden by the class's
    ``option_defaults()`` where it has one (a settings variant that keeps its defaults as class data). The runner
    reads them from the solver's ``conf/solver/<name>.yaml`` node as they are and checks them before a run.
    bare_step: its step written against the raw network (``solvers.bare``), the benchmark's baseline; optional.
    needs: what its step asks of the operator, in ``operators.CAPABILITIES``' words (``differentiable``: A(x) under
    autograd; ``linear``: the exact adjoint / ``transpose``; ``pinv``; ``prox_l2``), checked against
    ``Operator.capabilities`` before a run (``fit_error``; table in docs/solvers.md).
    uses_if_offered: what its step also uses when the operator offers it, never refused for (RED-diff's start A^+ y,
        zeros for a nonlinear operator).
    reference_resample: how the solver's reference code resizes the data to the prior's size, applied with
    ``solver.reference=true`` (``bicubic``, ours otherwise, or ``nearest``).
    reference_tasks: task name -> the task settings of the solver's reference code (``ReferenceTask``), applied with
    ``solver.reference=true`` (``runner.config.operator_params`` / ``task_noise`` / ``resolve_settings``).
    """

    cls: Callable[..., Solver]
    space: Space
    params: tuple[str, ...]
    table: str
    constraints: Mapping[str, Allowed] = field(default_factory=dict, hash=False)
    bare_step: BareStep | None = None
    needs: frozenset[str] = frozenset({"differentiable"})
    uses_if_offered: frozenset[str] = frozenset()
    reference_resample: Resample = "bicubic"
    reference_tasks: Mapping[str, ReferenceTask] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        for what, words in (("needs", self.needs), ("uses_if_offered", self.uses_if_offered)):
            if not words <= set(CAPABILITIES):
                raise ValueError(f"{what} {sorted(words - set(CAPABILITIES))}: not in {CAPABILITIES}")
        if self.reference_resample not in typing.get_args(Resample):
            raise ValueError(f"reference_resample must be one of {typing.get_args(Resample)}")
        unknown = sorted(set(self.constraints) - set(self.option_specs))
        if unknown:
            raise ValueError(f"constraints on {unknown}, which are not options of {self.cls.__name__}")

    @property
    def has_reference_mode(self) -> bool:
        """Whether ``solver.reference=true`` changes anything: a ``reference`` option of the class, or reference
        task settings / data resizing declared here."""
        return "reference" in self.options or bool(self.reference_tasks) or self.reference_resample != "bicubic"

    def reference_task(self, task: str) -> ReferenceTask:
        """The reference code's settings for ``task`` (empty: the task's own)."""
        return self.reference_tasks.get(task, NO_REFERENCE_TASK)

    @cached_property
    def option_specs(self) -> dict[str, SolverOption]:
        """Option name -> ``SolverOption``, in the constructor's order."""
        return constructor_options(self.cls, exclude=(*NOT_OPTIONS, *self.params), constraints=self.constraints)

    @property
    def options(self) -> tuple[str, ...]:
        """The options' names: the constructor arguments read from the solver's conf node."""
        return tuple(self.option_specs)

    def accepts(self, prior: Prior) -> bool:
        return prior_space(prior) == self.space

    def missing(self, operator: Operator) -> list[str]:
        """What this solver needs that ``operator`` does not offer (``CAPABILITIES`` order; empty: it fits)."""
        return [c for c in CAPABILITIES if c in self.needs and c not in operator.capabilities]

    def build(
        self,
        prior: Prior,
        operator: Operator | None,
        step_sizes: Mapping[str, float],
        *,
        pag: PAG | None = None,
        num_steps: int,
        progress: bool = True,
        options: Mapping[str, Any] | None = None,
    ) -> Solver:
        """The solver from resolved settings; ``options``: a mapping holding (at least) this spec's ``options``
        (the solver's conf node; other keys are ignored)."""
        missing = [p for p in self.params if p not in step_sizes]
        if missing:
            raise ValueError(f"{self.cls.__name__} needs the step sizes {missing}")
        problem = None if operator is None else fit_error(self, operator)
        if problem:
            raise ValueError(problem)
        options = options or {}
        extra = {k: options[k] for k in self.options if k in options}
        sizes = {p: float(step_sizes[p]) for p in self.params}
        return self.cls(prior, operator, **sizes, pag=pag, num_steps=num_steps, progress=progress, **extra)


def constructor_options(
    cls: Callable[..., Any], exclude: Iterable[str] = (), constraints: Mapping[str, Allowed] | None = None
) -> dict[str, SolverOption]:
    """The settings ``cls`` takes: every named parameter of its constructor but ``exclude``, with its type hint and
    its effective default (``cls.option_defaults()[name]`` where the class defines that hook, else the signature's).
    A parameter without a default is an error: a conf file could not leave it out."""
    exclude, constraints = set(exclude), constraints or {}
    hints = _type_hints(cls)
    defaults = dict(cls.option_defaults()) if callable(getattr(cls, "option_defaults", None)) else {}
    options: dict[str, SolverOption] = {}
    for name, param in inspect.signature(cls).parameters.items():
        if name in exclude or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = defaults.get(name, param.default)
        if default is inspect.Parameter.empty:
            raise TypeError(f"{getattr(cls, '__name__', cls)}: option {name!r} has no default")
        kind, nullable, choices = _kind(hints.get(name), default)
        allowed = constraints.get(name, Allowed())
        choices = allowed.choices or choices
        options[name] = SolverOption(name, default, kind, nullable, allowed.low, allowed.high, choices)
    return options


def _type_hints(cls: Callable[..., Any]) -> dict[str, Any]:
    """The constructor's annotations as types (postponed ones evaluated in its module; one that does not evaluate,
    e.g. a name imported for type checkers only, is left out: its option falls back to its default's type)."""
    init = cls.__init__ if isinstance(cls, type) else cls
    try:
        return typing.get_type_hints(init)
    except Exception:  # one annotation that does not resolve: resolve the others one by one
        pass
    namespace = dict(vars(sys.modules[init.__module__])) if init.__module__ in sys.modules else {}
    hints = {}
    for name, annotation in getattr(init, "__annotations__", {}).items():
        try:
            hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
        except Exception:
            continue
    return hints


#: the option types a conf file holds and ``runner.validate`` checks
CONFIG_TYPES = (bool, int, float, str)


def _kind(hint: Any, default: Any) -> tuple[type, bool, tuple[Any, ...] | None]:
    """(type, nullable, choices) of an annotation: ``X | None`` -> nullable ``X``, ``Literal[...]`` -> its values;
    without an annotation the default's type (a ``None`` default: nullable)."""
    nullable, choices = default is None, None
    if hint is None:
        return (type(default) if type(default) in CONFIG_TYPES else object), nullable, choices
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        nullable = nullable or type(None) in args
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else object
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        kinds = {type(c) for c in choices}
        hint = kinds.pop() if len(kinds) == 1 else object
    return (hint if hint in CONFIG_TYPES else object), nullable, choices


#: how an error names each capability a solver needs
NEED_WORDS = {
    "differentiable": "a differentiable forward A(x)",
    "linear": "a linear operator with its exact adjoint A^T (is_linear)",
    "pinv": "the pseudo-inverse A^+ (pinv)",
    "prox_l2": "the proximal data step prox_l2(y, x0, rho)",
}


def solvers_that_fit(operator: Operator) -> list[str]:
    """Names of the registered solvers whose needs ``operator`` offers, in registry order."""
    return [name for name, spec in SOLVERS.items() if not spec.missing(operator)]


def fit_error(solver: str | SolverSpec, operator: Operator, what: str | None = None) -> str | None:
    """None when ``solver`` (a name or a spec) can run with ``operator``; else one sentence: what it needs that
    ``operator`` (``what`` names it; default: its class) lacks, and the solvers that can, by prior space."""
    spec = SOLVERS[solver] if isinstance(solver, str) else solver
    missing = spec.missing(operator)
    if not missing:
        return None
    name = solver if isinstance(solver, str) else next((n for n, s in SOLVERS.items() if s is spec), spec.cls.__name__)
    what = what or f"operator {type(operator).__name__}"
    offered = ", ".join(c for c in CAPABILITIES if c in operator.capabilities)
    fitting = solvers_that_fit(operator)
    by_space = [
        f"{', '.join(n for n in fitting if SOLVERS[n].space == space)} ({space} priors)"
        for space in SPACES
        if any(SOLVERS[n].space == space for n in fitting)
    ]
    can = f"solvers that can: {'; '.join(by_space)}" if by_space else "no registered solver can"
    return (
        f"solver={name} needs {' and '.join(NEED_WORDS[c] for c in missing)}, which {what} does not offer "
        f"(it offers: {offered}); {can}"
    )


def prior_space(prior: Prior) -> Space:
    """``latent`` for priors over an autoencoder's latents, else ``pixel``."""
    return "latent" if prior.is_latent else "pixel"


#: the bounds DAPS and LatentDAPS share (solvers/daps.py): annealing tau, ODE steps per x0_hat, MCMC algorithm
_DAPS_CONSTRAINTS = {"tau": Allowed(low=0), "ode_steps": Allowed(low=1), "mc_algo": Allowed(choices=MC_ALGOS)}
#: the task settings of DAPS's official configs, pixel and latent alike (``solver.reference=true``)
_DAPS_REFERENCE_TASKS = {
    "phase_retrieval": PHASE_RETRIEVAL_DAPS,
    "nonlinear_deblur": NONLINEAR_BLUR_DAPS,
    # configs/task/inpainting_rand.yaml: mask_prob_range [0.70, 0.71]
    "random_inpaint": ReferenceTask(params={"prob_range": [0.70, 0.71]}),
}


#: name -> spec. The first solver declared for a space is that space's default (``solver=auto``, ``sample``).
SOLVERS: Mapping[str, SolverSpec] = {
    "dps": SolverSpec(
        cls=DPS,
        space="pixel",
        params=("zeta",),
        table="dps",
        bare_step=dps_bare_step,
        reference_tasks={"phase_retrieval": PHASE_RETRIEVAL_DPS, "nonlinear_deblur": NONLINEAR_BLUR_DPS},
    ),
    "diffpir": SolverSpec(
        cls=DiffPIR,
        space="pixel",
        params=("lam", "zeta"),
        table="diffpir",
        constraints={"sigma_y": Allowed(low=0), "cg_max_iter": Allowed(low=1), "cg_tol": Allowed(low=0)},
        needs=frozenset({"prox_l2"}),  # its data step (eq. 13); A itself is never differentiated
        reference_tasks={
            "box_inpaint": DIFFPIR_INPAINT,
            # main_ddpir_inpainting.py: mask_type random, mask_prob_range [0.5, 0.5]
            "random_inpaint": replace(DIFFPIR_INPAINT, params={"prob_range": [0.5, 0.5]}),
            "gaussian_deblur": DIFFPIR_NOISY,
            "motion_deblur": DIFFPIR_NOISY,
            "sr4": DIFFPIR_NOISY,
            "sr8": DIFFPIR_NOISY,
        },
    ),
    "psld": SolverSpec(
        cls=PSLD,
        space="latent",
        params=("omega", "gamma"),
        table="psld",
        bare_step=psld_bare_step,
        constraints={"eta": Allowed(low=0, high=1), "cfg_scale": Allowed(low=0)},
        needs=frozenset({"differentiable", "linear"}),  # the gluing term's A^T (docs/solvers.md)
        reference_resample="nearest",  # PSLD_PAG scripts/inverse.py: f.interpolate(img, 512) from 256 px
    ),
    "daps": SolverSpec(
        cls=DAPS,
        space="pixel",
        params=("lr",),
        table="daps",
        constraints={**_DAPS_CONSTRAINTS, "mcmc_steps": Allowed(low=1)},
        reference_tasks=_DAPS_REFERENCE_TASKS,
    ),
    # DDNM / PiGDM need a linear operator with A^+ (``operator.pinv``; PiGDM's noisy form also ``solve_gram``)
    "ddnm": SolverSpec(
        cls=DDNM,
        space="pixel",
        params=("eta", "pinv_rcond"),  # pinv_rcond per task: noisy deblurring on the tiny prior needs more (paper.yaml)
        table="ddnm",
        constraints={
            "sigma_y": Allowed(low=0),
            "travel_length": Allowed(low=1),
            "travel_repeat": Allowed(low=1),
            "pinv_max_iter": Allowed(low=1),
            "pinv_tol": Allowed(low=0),
        },
        bare_step=ddnm_bare_step,
        needs=frozenset({"pinv"}),  # x0_y = A^+ y + (I - A^+ A) x0_hat (A itself applied without gradient)
    ),
    "pigdm": SolverSpec(
        cls=PiGDM,
        space="pixel",
        params=("weight", "eta"),  # eta per task: the tiny prior's SR needs DDIM's fresh noise (conf/steps/paper.yaml)
        table="pigdm",
        constraints={
            "sigma_y": Allowed(low=0),
            "solve_max_iter": Allowed(low=1),
            "solve_tol": Allowed(low=0),
        },
        bare_step=pigdm_bare_step,
        # noisy: (r^2 A A^T + s^2 I)^-1 through A and A^T; noiseless: A^+ (every linear operator offers one)
        needs=frozenset({"linear"}),
    ),
    # the official SD settings vary the MCMC per task (steps, step size, its decay, HMC momentum)
    "latent_daps": SolverSpec(
        cls=LatentDAPS,
        space="latent",
        params=("lr", "mcmc_steps", "lr_min_ratio", "momentum"),
        table="latent_daps",
        constraints={**_DAPS_CONSTRAINTS, "cfg_scale": Allowed(low=0)},
        reference_tasks=_DAPS_REFERENCE_TASKS,  # the official sd / ldm rows of the same task files
    ),
    "reddiff": SolverSpec(
        cls=REDDiff,
        space="pixel",
        params=("lam", "lr"),
        table="reddiff",
        constraints={
            "obs_weight": Allowed(low=0),
            "sigma_x0": Allowed(low=0),
        },
        bare_step=reddiff_bare_step,
        uses_if_offered=frozenset({"pinv"}),  # init=auto: mu_0 = A^+ y (the official start), zeros when nonlinear
    ),
    "resample": SolverSpec(
        cls=ReSample,
        space="latent",
        # per row: the searches' iteration limits (the official 2000 / 500 cost seconds per step on a CPU) and how
        # often to resample, which goes with the row's number of steps
        params=("zeta", "gamma", "pixel_iters", "latent_iters", "resample_every"),
        table="resample",
        bare_step=resample_bare_step,
        constraints={
            "travel_steps": Allowed(low=1),
            "pixel_lr": Allowed(low=0),
            "latent_lr": Allowed(low=0),
            "latent_patience": Allowed(low=1),
            "tol": Allowed(low=0),
            "weight_decay": Allowed(low=0),
        },
        # A(D(z)) under autograd (latent DPS, latent optimisation) and A(x) in the pixel optimisation
    ),
}


def default_solver(space: Space | bool) -> str:
    """The default solver's name for priors of ``space`` (``True`` / ``False``: latent or not)."""
    if isinstance(space, bool):
        space = "latent" if space else "pixel"
    for name, spec in SOLVERS.items():
        if spec.space == space:
            return name
    raise ValueError(f"no solver registered for {space} priors")


def solvers_for(space: Space) -> list[str]:
    """Names of the solvers that run on priors of ``space``, in registry order."""
    return [name for name, spec in SOLVERS.items() if spec.space == space]
