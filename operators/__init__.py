"""Measurement operators y = A(x) + n with exact adjoints (see ``Operator``)."""

from .base import NoiseSpec, Operator, as_noise_model
from .inpaint import BoxInpainting, Inpainting, RandomInpainting
from .noise import GaussianNoise, NoiseModel, NoNoise, PoissonNoise, make_noise
from .random import as_generator_list, generators_from_seeds, parameter_generators, randn
from .resize import SuperResolution

__all__ = [
    "BoxInpainting",
    "GaussianNoise",
    "Inpainting",
    "NoNoise",
    "NoiseModel",
    "NoiseSpec",
    "Operator",
    "PoissonNoise",
    "RandomInpainting",
    "SuperResolution",
    "as_generator_list",
    "as_noise_model",
    "generators_from_seeds",
    "make_noise",
    "parameter_generators",
    "randn",
]
