"""DPS against the closed-form posterior of a Gaussian prior with a linear operator and Gaussian noise."""

import math

import pytest
import torch

from operators.random import generators_from_seeds
from priors import GaussianPrior, linear_operator_matrix
from solvers import DPS, DivergenceError, sample

SHAPE = (1, 8, 8)
D = 64


@pytest.fixture(scope="module")
def problem(matrix_operator):
    g = torch.Generator().manual_seed(0)
    coords = torch.cartesian_prod(torch.arange(8.0), torch.arange(8.0))
    covariance = 0.25 * torch.exp(-torch.cdist(coords, coords) / 3.0) + 1e-3 * torch.eye(D)  # smooth images
    prior = GaussianPrior(torch.zeros(D, dtype=torch.float64), covariance.double(), SHAPE)
    A = torch.randn(32, D, generator=g, dtype=torch.float64) / math.sqrt(32)
    op = matrix_operator(A, noise_sigma=0.05, shape=SHAPE)
    x0 = (torch.linalg.cholesky(covariance.double()) @ torch.randn(D, generator=g, dtype=torch.float64)).view(1, *SHAPE)
    y = op.measure(x0.float(), torch.Generator().manual_seed(1))
    return prior, op, A, y


def test_linear_operator_matrix_is_the_operator(problem):
    _, op, A, _ = problem
    torch.testing.assert_close(linear_operator_matrix(op, SHAPE), A)


def test_gaussian_prior_eps_is_the_exact_score(problem):
    """eps(x_t) = -sqrt(1 - abar) grad log p_t(x_t): check against autograd of the closed-form density."""
    prior, *_ = problem
    g = torch.Generator().manual_seed(3)
    x_t = torch.randn(2, *SHAPE, generator=g, dtype=torch.float64)
    t = 400
    abar = prior.schedule.alphas_cumprod[t]
    cov_t = abar * prior.covariance + (1 - abar) * torch.eye(D, dtype=torch.float64)
    density = torch.distributions.MultivariateNormal(abar.sqrt() * prior.mu, covariance_matrix=cov_t)
    x = x_t.flatten(1).clone().requires_grad_(True)
    score = torch.autograd.grad(density.log_prob(x).sum(), x)[0]
    torch.testing.assert_close(prior(x_t, t).eps.flatten(1), -(1 - abar).sqrt() * score)


def test_dps_samples_the_posterior(problem):
    prior, op, A, y = problem
    mean, cov = prior.posterior(A, y, 0.05)
    n = 64
    gens = generators_from_seeds(range(n))
    xs = DPS(prior, op, zeta=0.1, num_steps=1000, progress=False).restore(y.expand(n, -1, -1, -1), gens)
    unconditional = sample(prior, n, generators_from_seeds(range(n)), num_steps=1000, progress=False)

    dps_error = (xs.flatten(1).double().mean(0) - mean[0]).norm()
    unconditional_error = (unconditional.flatten(1).double().mean(0) - mean[0]).norm()
    assert dps_error < 0.25 * unconditional_error, (dps_error, unconditional_error)

    # measurement consistency near the noise level: an exact posterior sample has E||y - A x|| ~ this
    exact = mean + torch.randn(4000, D, generator=torch.Generator().manual_seed(5), dtype=torch.float64) @ (
        torch.linalg.cholesky(cov).T
    )
    exact_residual = (y.flatten(1).double() - exact @ A.T).norm(dim=1).mean()
    residual = (y - op(xs)).flatten(1).norm(dim=1).mean()
    assert 0.5 * exact_residual < residual < 2.0 * exact_residual, (residual, exact_residual)
    # spread like posterior samples (the posterior is far from a point mass: tr(cov) is large)
    spread = (xs.flatten(1).double() - mean).norm(dim=1).mean()
    assert 0.7 < spread / cov.trace().sqrt() < 1.3


def test_batch_of_n_equals_n_single_runs(problem):
    prior, op, _, y = problem
    ys = torch.cat([y, -y, 0.5 * y])
    solver = DPS(prior, op, zeta=0.3, num_steps=50, progress=False)
    batch = solver.restore(ys, generators_from_seeds([10, 11, 12]))
    for i in range(3):
        alone = solver.restore(ys[i : i + 1], generators_from_seeds([10 + i]))
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-5)


def test_callback_and_divergence(problem):
    prior, op, _, y = problem
    seen = []
    DPS(prior, op, zeta=0.1, num_steps=20, progress=False).restore(
        y, generators_from_seeds([0]), callback=lambda info: seen.append((info.i, info.t)), callback_every=5
    )
    assert [i for i, _ in seen] == [0, 5, 10, 15, 19]
    assert seen[0][1] == 999 and seen[-1][1] == 0
    with pytest.raises(DivergenceError, match=r"diverged at step \d+ \(t=\d+\).*sample\(s\) \[0\]"):
        DPS(prior, op, zeta=float("inf"), num_steps=20, progress=False).restore(y, generators_from_seeds([0]))


def test_bad_input(problem):
    prior, op, _, y = problem
    with pytest.raises(ValueError, match="rank 3"):
        DPS(prior, op, progress=False).restore(y[0], generators_from_seeds([0]))
    with pytest.raises(ValueError, match="needs an explicit generator"):
        DPS(prior, op, progress=False).restore(y, None)
    with pytest.raises(ValueError, match="2 generators for a batch of 1"):
        DPS(prior, op, progress=False).restore(y, generators_from_seeds([0, 1]))
