"""The one chain every solver runs: a solver is its settings and its step; this module runs the steps.

    x = start(x_T)                                  x_T ~ N(0, I) from one generator per image, or given
    for i in 0 .. N-1:                              (progress bar over the steps)
        x, x0_hat = step(ctx, i, x)                 ctx: noise predictor (PAG / CFG), y, generators, this step's noise
        finite check (DivergenceError), callback(StepInfo) every ``callback_every`` steps
    return finish(x)                                clamped to [-1, 1]; decoded first for latent priors

As k-diffusion's samplers (crowsonkb/k-diffusion ``k_diffusion/sampling.py``: one loop, a callback per step) and
azula's ``Sampler.step`` (probabilists/azula ``azula/sample.py``), the loop knows nothing of a solver's equations.
PAG's ``interval`` and adaptive scale act per network call inside ``NoisePredictor`` (a DAPS step calls the
network at several timesteps), so a step outside the interval runs no perturbed pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from operators import Operator
from operators.random import Generators, as_generator_list, randn
from priors import Prior

from .guidance import PAG, NoisePredictor


@dataclass
class StepInfo:
    """Passed to a sampler's callback: step index ``i`` (0 = noisiest), timestep ``t``, the current
    iterate ``x_t`` and the (unguided) Tweedie estimate ``x0_hat``; both detached. For latent samplers
    both are latents (``prior.decode`` them for pictures)."""

    i: int
    t: int
    x_t: Tensor
    x0_hat: Tensor
    num_steps: int


StepCallback = Callable[[StepInfo], None]


class DivergenceError(RuntimeError):
    """A sample's iterate became NaN/inf; says at which step and which samples of the batch."""

    def __init__(self, step: int, timestep: int, samples: list[int]):
        self.step, self.timestep, self.samples = step, timestep, samples
        super().__init__(
            f"sampling diverged at step {step} (t={timestep}): non-finite values in sample(s) {samples} of the "
            "batch. Lower the step size (zeta / omega, gamma) or the PAG scale."
        )


def check_finite(x: Tensor, step: int, timestep: int) -> None:
    finite = torch.isfinite(x.flatten(1)).all(dim=1)
    if not bool(finite.all()):
        raise DivergenceError(step, timestep, torch.nonzero(~finite).flatten().tolist())


def should_call(i: int, num_steps: int, every: int) -> bool:
    """Call back every ``every`` steps and always after the last one (every <= 0: never)."""
    return every > 0 and (i % every == 0 or i == num_steps - 1)


@dataclass
class StepContext:
    """What a step reads besides (i, x): the noise predictor (PAG / CFG combined), the measurement ``y`` (None:
    unconditional), the per-image generators for the step's own draws, and ``noise``: this step's N(0, I) draw, made
    by the chain before the step for solvers that declare ``stochastic`` (else None)."""

    predict: NoisePredictor
    y: Tensor | None = None
    generators: list[torch.Generator] = field(default_factory=list)
    noise: Tensor | None = None

    def randn(self, like: Tensor) -> Tensor:
        """N(0, I) of ``like``'s shape, device and dtype, image b drawn from generator b."""
        return randn(like.shape, self.generators, device=like.device, dtype=like.dtype)


@runtime_checkable
class Solver(Protocol):
    """What every registered solver offers. Constructed as ``Cls(prior, operator, **step_sizes, pag=...,
    num_steps=..., progress=..., **options)``, every option a keyword with a default; ``step`` is one step of the
    chain, ``restore`` runs the chain (``ChainSolver`` writes it once)."""

    prior: Prior
    operator: Operator | None
    pag: PAG | None

    def step(self, ctx: StepContext, i: int, x: Tensor) -> tuple[Tensor, Tensor]: ...

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


class ChainSolver:
    """Base of the solvers: ``restore`` through ``run_chain``. A subclass sets ``prior``, ``operator``, ``pag``,
    ``progress`` and ``timesteps`` (the network timestep of each chain step, noisiest first: the chain's length)
    and writes ``step``; ``start`` / ``finish`` / ``predictor`` have defaults it may override.

    stochastic: the chain draws ``ctx.noise`` ~ N(0, I) of x's shape before each step.
    requires_measurement: ``restore(None, ...)`` is refused (no unconditional sampling).
    """

    stochastic: ClassVar[bool] = True
    requires_measurement: ClassVar[bool] = False
    prior: Prior
    operator: Operator | None
    pag: PAG | None
    progress: bool
    timesteps: list[int]
    cond: object | None = None  #: conditioning of every pass (class labels, a prompt's embedding)
    uncond: object | None = None  #: classifier-free guidance's unconditional input (with cfg_scale != 1)
    cfg_scale: float = 1.0

    def step(self, ctx: StepContext, i: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """One step from x at ``timesteps[i]``: (the next iterate, x0_hat), both detached."""
        raise NotImplementedError

    def predictor(self) -> NoisePredictor:
        """The run's noise predictor: PAG with this solver's conditioning and CFG."""
        return NoisePredictor(self.prior, self.pag, cond=self.cond, uncond=self.uncond, cfg_scale=self.cfg_scale)

    def start(self, x_T: Tensor) -> Tensor:
        """The first iterate from x_T ~ N(0, I) (identity; DAPS rescales to its EDM noise level)."""
        return x_T

    def finish(self, x: Tensor) -> Tensor:
        """The chain's last iterate as images in [-1, 1] (latents decoded)."""
        if self.prior.is_latent:
            with torch.no_grad():
                x = self.prior.decode(x)
        return x.clamp(-1, 1)

    def restore(
        self,
        y: Tensor | None,
        generator: Generators,
        *,
        batch_size: int | None = None,
        x_T: Tensor | None = None,
        callback: StepCallback | None = None,
        callback_every: int = 0,
    ) -> Tensor:
        """Sample x_0 ~ p(x_0 | y) (or p(x_0) when ``y`` / ``operator`` is None) as images in [-1, 1].

        ``generator``: one torch.Generator per image (batch-size invariant) or one shared generator.
        ``batch_size``: needed only when ``y`` is None. ``x_T``: the N(0, I) start in the prior's ``sample_shape``
        (latents for latent priors; default: drawn from the generators). ``callback(StepInfo)`` runs every
        ``callback_every`` steps and after the last one.
        """
        x = run_chain(self, y, generator, batch_size=batch_size, x_T=x_T, callback=callback, every=callback_every)
        return self.finish(x)


def initial_noise(
    prior: Prior, y: Tensor | None, generator: Generators, batch_size: int | None, what: str
) -> tuple[Tensor, list[torch.Generator]]:
    """x_T ~ N(0, I) of the prior's sample shape, one generator per image, on the measurement's device / dtype."""
    if y is not None:
        Operator.check_image(y, "measurement y")
    batch = y.shape[0] if y is not None else batch_size
    if batch is None:
        raise ValueError("unconditional sampling needs batch_size")
    like = y if y is not None else next(prior.parameters(), torch.empty(0))
    dtype = like.dtype if like.is_floating_point() else torch.float32
    generators = as_generator_list(generator, batch, what=what)
    return randn((batch, *prior.sample_shape), generators, device=like.device, dtype=dtype), generators


def run_chain(
    solver: ChainSolver,
    y: Tensor | None,
    generator: Generators,
    *,
    batch_size: int | None = None,
    x_T: Tensor | None = None,
    callback: StepCallback | None = None,
    every: int = 0,
) -> Tensor:
    """The chain's last iterate (before ``finish``): see the module docstring."""
    name = type(solver).__name__
    if solver.requires_measurement and y is None:
        raise ValueError(f"{name} needs a measurement y (use solvers.sample for unconditional samples)")
    x, generators = initial_noise(solver.prior, y, generator, batch_size, f"{name} sampling")
    x = solver.start(x_T if x_T is not None else x)
    ctx = StepContext(solver.predictor(), y, generators)
    n = len(solver.timesteps)
    for i in tqdm(range(n), desc=name, disable=not solver.progress, leave=False):
        noise = ctx.randn(x) if solver.stochastic else None
        x, x0_hat = solver.step(replace(ctx, noise=noise), i, x)
        t = solver.timesteps[i]
        check_finite(x, i, t)
        if callback is not None and should_call(i, n, every):
            callback(StepInfo(i=i, t=t, x_t=x, x0_hat=x0_hat, num_steps=n))
    return x
