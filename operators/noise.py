"""Measurement noise models n in y = A(x) + n (images in [-1, 1])."""

from __future__ import annotations

import torch
from torch import nn

from .random import Generators, as_generator_list, randn


class NoiseModel(nn.Module):
    """Adds measurement noise; randomness comes only from the generator(s) passed in.

    ``sigma``: the Gaussian std on the [-1, 1] scale, 0.0 for no noise, None for a model with no Gaussian level
    (Poisson): what solvers that weigh the data by a noise level read.
    """

    sigma: float | None = None

    def forward(self, y: torch.Tensor, generator: Generators | None = None) -> torch.Tensor:
        raise NotImplementedError


class NoNoise(NoiseModel):
    sigma = 0.0

    def forward(self, y: torch.Tensor, generator: Generators | None = None) -> torch.Tensor:
        return y

    def extra_repr(self) -> str:
        return "noiseless"


class GaussianNoise(NoiseModel):
    """n ~ N(0, sigma^2 I), sigma on the [-1, 1] scale (DPS/PSLD use 0.05)."""

    def __init__(self, sigma: float = 0.05):
        super().__init__()
        if sigma < 0:
            raise ValueError(f"noise sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def forward(self, y: torch.Tensor, generator: Generators | None = None) -> torch.Tensor:
        if self.sigma == 0:
            return y
        return y + self.sigma * randn(y.shape, generator, device=y.device, dtype=y.dtype)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class PoissonNoise(NoiseModel):
    """Photon noise as in DPS: map to [0, 1], count at ``rate * 255`` photons per unit, map back.

    y_noisy = 2 * Poisson(rate * 255 * (y + 1) / 2) / (rate * 255) - 1, with the mean clamped to [0, 1].
    """

    def __init__(self, rate: float = 1.0):
        super().__init__()
        if rate <= 0:
            raise ValueError(f"Poisson rate must be > 0, got {rate}")
        self.rate = float(rate)

    def forward(self, y: torch.Tensor, generator: Generators | None = None) -> torch.Tensor:
        gens = as_generator_list(generator, y.shape[0], what="Poisson noise")
        photons = ((y.detach() + 1) / 2).clamp(0, 1).float() * 255.0 * self.rate
        counts = torch.stack([torch.poisson(p.to(g.device), generator=g).to(y.device) for p, g in zip(photons, gens)])
        return (counts / (255.0 * self.rate) * 2 - 1).to(y.dtype)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


def make_noise(name: str | None = "gaussian", **kwargs) -> NoiseModel:
    """``gaussian`` (sigma=0.05), ``poisson`` (rate=1.0) or ``none``."""
    if name is None or name == "none":
        return NoNoise()
    if name == "gaussian":
        return GaussianNoise(**kwargs)
    if name == "poisson":
        return PoissonNoise(**kwargs)
    raise ValueError(f"unknown noise model {name!r}; valid: 'gaussian', 'poisson', 'none'")
