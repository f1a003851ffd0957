"""Measurement operators y = A(x) + n with exact adjoints (see ``Operator``).

``make_operator(name, **kwargs)`` builds one by task name (``OPERATORS`` lists them):

    op = make_operator("motion_blur", kernel_size=61, intensity=0.5, generator=torch.Generator().manual_seed(0))
    y = op.measure(x, generator=generators_from_seeds(range(len(x))))
"""

from __future__ import annotations

from typing import Any

from .base import CAPABILITIES, NoiseSpec, Operator, as_noise_model
from .blur import Blur, GaussianBlur, MotionBlur, gaussian_kernel, motion_kernel
from .inpaint import BoxInpainting, Inpainting, RandomInpainting
from .noise import GaussianNoise, NoiseModel, NoNoise, PoissonNoise, make_noise
from .random import as_generator_list, generators_from_seeds, parameter_generators, randn
from .resize import SuperResolution

#: task name -> operator class
OPERATORS: dict[str, type[Operator]] = {
    cls.name: cls for cls in (BoxInpainting, RandomInpainting, SuperResolution, GaussianBlur, MotionBlur)
}


def make_operator(name: str, **kwargs: Any) -> Operator:
    """The operator registered as ``name``, constructed with ``kwargs`` (e.g. ``generator=``, ``noise=``)."""
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; valid names: {', '.join(sorted(OPERATORS))}")
    return OPERATORS[name](**kwargs)


__all__ = [
    "CAPABILITIES",
    "OPERATORS",
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
    "make_operator",
    "motion_kernel",
    "parameter_generators",
    "randn",
]
