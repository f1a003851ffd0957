"""Shared fixtures of the solver tests."""

from __future__ import annotations

import pytest
import torch

from operators import GaussianNoise, Operator


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


@pytest.fixture(scope="session")
def matrix_operator():
    """``matrix_operator(A, noise_sigma, shape)``: a ``MatrixOperator``."""
    return MatrixOperator
