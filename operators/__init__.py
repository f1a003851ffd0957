"""Measurement operators y = A(x) + n (see ``Operator``): linear ones with exact adjoints, and nonlinear ones
(phase retrieval, HDR, the learned blur) with a differentiable forward only.

``make_operator(name, **kwargs)`` builds one by registry name (``OPERATORS`` lists them):

    op = make_operator("motion_blur", kernel_size=61, intensity=0.5, generator=torch.Generator().manual_seed(0))
    y = op.measure(x, generator=generators_from_seeds(range(len(x))))

Your own: ``from_function(A, noise_sigma=0.05)`` wraps a differentiable function, ``load_operator("<module>:<name>")``
loads one from the working directory or PYTHONPATH (docs/operators.md).
"""

from __future__ import annotations

from typing import Any

from .base import CAPABILITIES, NoiseSpec, Operator, WeightsFile, as_noise_model
from .blur import Blur, GaussianBlur, MotionBlur, gaussian_kernel, motion_kernel
from .custom import FunctionOperator, from_function, load_operator, resolve_operator
from .hdr import HighDynamicRange
from .inpaint import BoxInpainting, Inpainting, RandomInpainting
from .kernel_wizard import KernelWizard, KernelWizardOptions
from .noise import GaussianNoise, NoiseModel, NoNoise, PoissonNoise, make_noise
from .nonlinear_blur import BlurWeightsMissing, NonlinearBlur, default_weights_path, load_kernel_wizard
from .phase_retrieval import PhaseRetrieval
from .random import as_generator_list, generators_from_seeds, parameter_generators, randn
from .resize import SuperResolution

#: task name -> operator class
OPERATORS: dict[str, type[Operator]] = {
    cls.name: cls
    for cls in (
        BoxInpainting,
        RandomInpainting,
        SuperResolution,
        GaussianBlur,
        MotionBlur,
        PhaseRetrieval,
        HighDynamicRange,
        NonlinearBlur,
    )
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
    "BlurWeightsMissing",
    "BoxInpainting",
    "FunctionOperator",
    "GaussianBlur",
    "GaussianNoise",
    "HighDynamicRange",
    "Inpainting",
    "KernelWizard",
    "KernelWizardOptions",
    "MotionBlur",
    "NoNoise",
    "NoiseModel",
    "NoiseSpec",
    "NonlinearBlur",
    "Operator",
    "PhaseRetrieval",
    "PoissonNoise",
    "RandomInpainting",
    "SuperResolution",
    "WeightsFile",
    "as_generator_list",
    "as_noise_model",
    "default_weights_path",
    "from_function",
    "gaussian_kernel",
    "generators_from_seeds",
    "load_kernel_wizard",
    "load_operator",
    "make_noise",
    "make_operator",
    "motion_kernel",
    "parameter_generators",
    "randn",
    "resolve_operator",
]
