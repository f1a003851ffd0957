"""Measurement operators y = A(x) + n with exact adjoints (see ``Operator``)."""

from .base import Operator
from .noise import GaussianNoise, NoiseModel, NoNoise, PoissonNoise, make_noise
from .random import as_generator_list, generators_from_seeds, randn

__all__ = [
    "GaussianNoise",
    "NoNoise",
    "NoiseModel",
    "Operator",
    "PoissonNoise",
    "as_generator_list",
    "generators_from_seeds",
    "make_noise",
    "randn",
]
