"""Plain sampling of the prior (no measurement), with or without PAG: PAG's original use, and a sanity
check of a prior. Runs the very same step code as the posterior samplers, minus the data term."""

from __future__ import annotations

from torch import Tensor

from operators.random import Generators
from priors import DiffusionPrior

from .common import StepCallback
from .dps import DPS
from .guidance import PAG
from .psld import PSLD


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
    """Draw ``batch_size`` images from the prior in [-1, 1]: DDPM ancestral sampling for pixel priors,
    DDIM (``eta``) + decoding for latent priors."""
    if prior.is_latent:
        sampler = PSLD(prior, None, num_steps=num_steps, eta=eta, pag=pag, progress=progress)
    else:
        sampler = DPS(prior, None, num_steps=num_steps, pag=pag, cond=cond, progress=progress)
    return sampler.restore(None, generator, batch_size=batch_size, callback=callback, callback_every=callback_every)
