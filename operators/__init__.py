"""Measurement operators y = A(x) + n with exact adjoints (see ``Operator``)."""

from .base import NoiseSpec, Operator, as_noise_model
from .blur import Blur, GaussianBlur, MotionBlur, gaussian_kernel, motion_kernel
from .inpaint import BoxInpainting, Inpainting, RandomInpainting
from .noise import GaussianNoise, NoiseModel, NoNoise, PoissonNoise, make_noise
from .random import as_generator_list, generators_from_seeds, parameter_generators, randn
from .resize import SuperResolution

__all__ = [
    "Blur",
    "BoxInpainting",
    "GaussianBlur",
    "GaussianNoise",
    "Inpainting",
    "MotionBlur",
    "NoNoise",
    "NoiseModel",
    "NoiseSpec",
    "Operator",
    "PoissonNoise",
    "RandomInpainting",
    "SuperResolution",
    "as_generator_list",
    "as_noise_model",
    "gaussian_kernel",
    "generators_from_seeds",
    "make_noise",
    "motion_kernel",
    "parameter_generators",
    "randn",
]
