"""Shared fixtures of the solver tests."""

from __future__ import annotations

import pytest
import torch

from operators import GaussianNoise, Operator, make_operator
from operators.random import generators_from_seeds


class MatrixOperator(Operator):
    """y = A x for a dense (m, d) matrix on images of ``shape``: a generic linear operator independent of the
    operators package (no closed form knows it; DiffPIR's data step falls back to conjugate gradients)."""

    def __init__(self, A: torch.Tensor, noise_sigma: float, shape: tuple[int, ...]):
        super().__init__(GaussianNoise(noise_sigma))
        self.register_buffer("A", A)
        self.shape = tuple(shape)

    def forward(self, x):
        return (x.flatten(1) @ self.A.T.to(x.dtype)).view(x.shape[0], 1, 1, -1)

    def adjoint(self, y):
        return (y.flatten(1) @ self.A.to(y.dtype)).view(y.shape[0], *self.shape)


def _box_inpaint(sigma: float = 0.0, seeds=(0, 1, 2)) -> Operator:
    """Box inpainting of 32x32 images in float64 (hole 12, margin 2; one hole placement per seed), noiseless
    unless ``sigma`` > 0."""
    return make_operator(
        "box_inpaint",
        image_size=32,
        hole=12,
        margin=2,
        generator=generators_from_seeds(list(seeds)),
        noise={"name": "gaussian", "sigma": sigma} if sigma else {"name": "none"},
    ).to(torch.float64)


@pytest.fixture(scope="session")
def box():
    """``box(sigma=0.0, seeds=(0, 1, 2))``: the box-inpainting operator of the DDNM and PiGDM loop tests."""
    return _box_inpaint


@pytest.fixture(scope="session")
def matrix_operator():
    """``matrix_operator(A, noise_sigma, shape)``: a ``MatrixOperator``."""
    return MatrixOperator


# The random float64 ADM and images of the DDNM and PiGDM loop tests (a test module may define its own).
@pytest.fixture(scope="module")
def prior():
    from priors.adm import ADMPrior

    net = ADMPrior.from_preset("test", init="random", generator=torch.Generator().manual_seed(0)).eval()
    return net.to(torch.float64)


@pytest.fixture(scope="module")
def images():
    return (torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1).double()
