"""What every sampler loop shares: per-step callbacks, progress, divergence checks, the data-term norm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from operators import Operator
from operators.random import Generators, as_generator_list, randn
from priors import DiffusionPrior, SamplingSchedule


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


def residual_norm(y: Tensor, y_hat: Tensor) -> Tensor:
    """Per-sample ||y - y_hat||_2 (shape (B,)). DPS takes one norm over the whole batch, which couples
    the images (its issue #12); summing per-sample norms keeps image i's gradient its own."""
    return (y - y_hat).flatten(1).norm(dim=1)


def batch_norm(y: Tensor, y_hat: Tensor) -> Tensor:
    """||y - y_hat||_2 over the whole batch (a scalar): the references' loss, which couples the images."""
    return (y - y_hat).norm()


def should_call(i: int, num_steps: int, every: int) -> bool:
    """Call back every ``every`` steps and always after the last one (every <= 0: never)."""
    return every > 0 and (i % every == 0 or i == num_steps - 1)


def initial_noise(
    prior: DiffusionPrior, y: Tensor | None, generator: Generators, batch_size: int | None, what: str
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
    schedule: SamplingSchedule,
    x: Tensor,
    step: Callable[[int, Tensor, Tensor | None], tuple[Tensor, Tensor]],
    generators: list[torch.Generator],
    *,
    stochastic: bool,
    desc: str,
    progress: bool,
    callback: StepCallback | None,
    callback_every: int,
) -> Tensor:
    """The sampling loop: ``x, x0_hat = step(i, x, noise)`` for every step, with per-image noise (when
    ``stochastic``), a progress bar, the divergence check and the callback."""
    n = len(schedule)
    for i in tqdm(range(n), desc=desc, disable=not progress, leave=False):
        noise = randn(x.shape, generators, device=x.device, dtype=x.dtype) if stochastic else None
        x, x0_hat = step(i, x, noise)
        t = int(schedule.timesteps[i])
        check_finite(x, i, t)
        if callback is not None and should_call(i, n, callback_every):
            callback(StepInfo(i=i, t=t, x_t=x, x0_hat=x0_hat, num_steps=n))
    return x
