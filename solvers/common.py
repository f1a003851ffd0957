"""What every sampler loop shares: per-step callbacks, progress, divergence checks, the data-term norm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


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


def should_call(i: int, num_steps: int, every: int) -> bool:
    """Call back every ``every`` steps and always after the last one (every <= 0: never)."""
    return every > 0 and (i % every == 0 or i == num_steps - 1)
