"""The solver registry: every posterior sampler declared once, with what the runner needs to know about it.

A solver is a class constructed as ``Cls(prior, operator, **step_sizes, pag=..., num_steps=..., progress=...,
**options)`` whose ``restore(y, generator, *, batch_size=None, x_T=None, callback=None, callback_every=0)``
returns images in [-1, 1], and whose step is written over a ``NoisePredictor`` (so PAG, CFG + PAG and the shared
prefix come with it). The runner (config checks, ``solver=auto``, building), ``sample`` and
the benchmark read this table; nothing else branches on a solver's name.

Adding a solver: its module, its entry in ``SOLVERS``, its ``conf/solver/<name>.yaml`` (its own keys only; the
shared ones are in ``conf/_solver_base.yaml``) and its rows in ``conf/steps/*.yaml`` under ``table``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from torch import Tensor

from operators import Operator
from operators.random import Generators
from priors import Prior

from .common import StepCallback
from .daps import DAPS, LatentDAPS
from .diffpir import DiffPIR
from .dps import DPS
from .guidance import PAG
from .psld import PSLD

Space = Literal["pixel", "latent"]
SPACES: tuple[Space, ...] = ("pixel", "latent")


@runtime_checkable
class Solver(Protocol):
    """What every registered solver offers (see the module docstring for the constructor)."""

    prior: Prior
    operator: Operator | None
    pag: PAG | None

    def restore(
        self,
        y: Tensor | None,
        generator: Generators,
        *,
        batch_size: int | None = None,
        x_T: Tensor | None = None,
        callback: StepCallback | None = None,
        callback_every: int = 0,
    ) -> Tensor: ...


@dataclass(frozen=True)
class SolverSpec:
    """One registered solver.

    cls: the solver class. space: the priors it runs on (``pixel`` or ``latent``, i.e. ``prior.is_latent``).
    params: its step-size arguments, resolved from the step table (``<param>`` / ``<param>_pag``) unless given.
    table: its section of ``conf/steps/<table>.yaml``.
    options: further constructor arguments read from its ``conf/solver/<name>.yaml`` node as they are.
    """

    cls: Callable[..., Solver]
    space: Space
    params: tuple[str, ...]
    table: str
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")

    def accepts(self, prior: Prior) -> bool:
        return prior_space(prior) == self.space

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
        options = options or {}
        extra = {k: options[k] for k in self.options if k in options}
        sizes = {p: float(step_sizes[p]) for p in self.params}
        return self.cls(prior, operator, **sizes, pag=pag, num_steps=num_steps, progress=progress, **extra)


def prior_space(prior: Prior) -> Space:
    """``latent`` for priors over an autoencoder's latents, else ``pixel``."""
    return "latent" if prior.is_latent else "pixel"


DAPS_OPTIONS = (
    "tau",
    "ode_steps",
    "mcmc_steps",
    "lr_min_ratio",
    "sigma_max",
    "sigma_min",
    "ode_sigma_min",
    "rho",
    "mc_algo",
    "momentum",
    "grad_clip",
)

#: name -> spec. The first solver declared for a space is that space's default (``solver=auto``, ``sample``).
SOLVERS: Mapping[str, SolverSpec] = {
    "dps": SolverSpec(cls=DPS, space="pixel", params=("zeta",), table="dps", options=("clip_x0", "reference")),
    "diffpir": SolverSpec(
        cls=DiffPIR,
        space="pixel",
        params=("lam", "zeta"),
        table="diffpir",
        options=("sigma_y", "clip_x0", "cg_max_iter", "cg_tol"),
    ),
    "psld": SolverSpec(
        cls=PSLD,
        space="latent",
        params=("omega", "gamma"),
        table="psld",
        options=(
            "eta",
            "prompt",
            "cfg_scale",
            "noisy_measurement_loss",
            "stochastic_encoder",
            "empty_prompt_cfg",
            "reference",
        ),
    ),
    "daps": SolverSpec(
        cls=DAPS,
        space="pixel",
        params=("lr",),
        table="daps",
        options=DAPS_OPTIONS,
    ),
    # the official SD settings vary the MCMC per task (steps, step size, its decay, HMC momentum)
    "latent_daps": SolverSpec(
        cls=LatentDAPS,
        space="latent",
        params=("lr", "mcmc_steps", "lr_min_ratio", "momentum"),
        table="latent_daps",
        options=(
            "tau",
            "ode_steps",
            "sigma_max",
            "sigma_min",
            "ode_sigma_min",
            "rho",
            "mc_algo",
            "grad_clip",
            "prompt",
            "cfg_scale",
        ),
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
