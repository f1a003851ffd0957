"""An analytic Gaussian prior x_0 ~ N(mu, Sigma): exact noise prediction, no network.

Under the VP forward process x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps the marginal is
x_t ~ N(sqrt(abar) mu, C_t) with C_t = abar Sigma + (1 - abar) I, so the MMSE noise prediction is
eps(x_t, t) = sqrt(1 - abar) C_t^{-1} (x_t - sqrt(abar) mu). With a linear operator and Gaussian noise
the posterior p(x_0 | y) is Gaussian and known in closed form (``posterior``): the ground truth against
which the samplers are tested.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .base import DiffusionPrior, ModelOutput
from .schedule import NoiseSchedule


class GaussianPrior(DiffusionPrior):
    """x_0 ~ N(mu, Sigma) on images of ``shape`` (C, H, W); ``mu`` (d,), ``Sigma`` (d, d), d = C*H*W."""

    def __init__(
        self, mu: Tensor, covariance: Tensor, shape: tuple[int, int, int], schedule: NoiseSchedule | None = None
    ):
        super().__init__()
        d = int(torch.tensor(shape).prod())
        if mu.shape != (d,) or covariance.shape != (d, d):
            raise ValueError(f"mu must be ({d},) and covariance ({d}, {d}) for shape {shape}")
        self.network = nn.Module()  # no attention layers: PAG does not apply
        self.schedule = schedule or NoiseSchedule.linear()
        self.sample_shape = tuple(shape)
        self.variance = "fixed_small"
        evals, evecs = torch.linalg.eigh(covariance.double())
        if bool((evals <= 0).any()):
            raise ValueError("covariance must be positive definite")
        self.register_buffer("mu", mu.double())
        self.register_buffer("covariance", covariance.double())
        self.register_buffer("evals", evals)
        self.register_buffer("evecs", evecs)

    def forward(self, x_t: Tensor, t: Tensor | int, cond: object | None = None) -> ModelOutput:
        t = self.timestep_tensor(t, x_t)
        abar = self.schedule.alphas_cumprod.to(x_t.device)[t].unsqueeze(1)  # (B, 1)
        x = x_t.flatten(1).double()
        centred = (x - abar.sqrt() * self.mu) @ self.evecs  # eigen-coordinates
        inv_c = 1 / (abar * self.evals + (1 - abar))  # C_t^{-1} in eigen-coordinates
        eps = (1 - abar).sqrt() * (centred * inv_c) @ self.evecs.T
        return ModelOutput(eps=eps.to(x_t.dtype).view_as(x_t))

    def posterior(self, A: Tensor, y: Tensor, noise_sigma: float) -> tuple[Tensor, Tensor]:
        """Mean (B, d) and covariance (d, d) of p(x_0 | y) for y = A x_0 + N(0, noise_sigma^2 I), A (m, d)."""
        A = A.double()
        precision = torch.linalg.inv(self.covariance) + A.T @ A / noise_sigma**2
        cov = torch.linalg.inv(precision)
        rhs = torch.linalg.solve(self.covariance, self.mu) + y.flatten(1).double() @ A / noise_sigma**2
        return rhs @ cov.T, cov


def linear_operator_matrix(forward: Callable[[Tensor], Tensor], shape: tuple[int, ...]) -> Tensor:
    """The dense matrix (m, d) of a linear map on tensors of ``shape`` (C, H, W), column by column."""
    d = int(torch.tensor(shape).prod())
    basis = torch.eye(d, dtype=torch.float64).view(d, *shape)
    with torch.no_grad():
        columns = forward(basis).flatten(1)  # (d, m): image of each basis vector
    return columns.T.contiguous()
