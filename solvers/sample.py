"""Plain sampling of the prior (no measurement), with or without PAG: PAG's original use, and a sanity
check of a prior. Runs the very same step code as the posterior samplers, minus the data term."""

from __future__ import annotations

import inspect

from torch import Tensor

from operators.random import Generators
from priors import DiffusionPrior

from .chain import StepCallback
from .guidance import PAG
from .registry import SOLVERS, default_solver, prior_space


def sample(
    prior: DiffusionPrior,
    batch_size: int,
    generator: Generators,
    *,
    num_steps: int = 250,
    pag: PAG | None = None,
    cond: object | None = None,
    eta: float = 0.0,
    progress: bool = True,
    callback: StepCallback | None = None,
    callback_every: int = 0,
) -> Tensor:
    """Draw ``batch_size`` images from the prior in [-1, 1] with the default solver of the prior's space (the
    registry's first: DDPM ancestral sampling for pixel priors, DDIM (``eta``) + decoding for latent priors),
    without a measurement. ``cond`` / ``eta`` go to that solver when it takes them."""
    cls = SOLVERS[default_solver(prior_space(prior))].cls
    accepted = inspect.signature(cls).parameters
    extra = {k: v for k, v in (("cond", cond), ("eta", eta)) if k in accepted}
    sampler = cls(prior, None, num_steps=num_steps, pag=pag, progress=progress, **extra)
    return sampler.restore(None, generator, batch_size=batch_size, callback=callback, callback_every=callback_every)
