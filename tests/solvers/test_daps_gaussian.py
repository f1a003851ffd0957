"""DAPS against closed forms: a Gaussian prior x0 ~ N(mu, Sigma) with a linear operator and Gaussian noise.

- the EDM denoiser D(x; sigma) of the VP prior is the posterior mean E[x0 | x0 + sigma n = x];
- one MCMC call targets p(x0 | x_t, y) ~ exp(-||y - A x0||^2 / tau^2 - ||x0 - x0_hat||^2 / (2 r^2)), a Gaussian
  N(m, P^-1) with P = 2 A^T A / tau^2 + I / r^2. Both chains are linear-Gaussian, so the law of their iterate after
  K steps is known exactly (computed here by iterating the moment recursions): the samples must match it, and it
  is the target up to the step-size bias derived below;
- the whole sampler's output against the true posterior p(x0 | y).
"""

import math

import pytest
import torch

from operators.random import generators_from_seeds
from priors import GaussianPrior
from solvers.daps import DAPS, poly_sigmas

SHAPE = (1, 4, 4)
D = 16


@pytest.fixture(scope="module")
def problem(matrix_operator):
    g = torch.Generator().manual_seed(0)
    coords = torch.cartesian_prod(torch.arange(4.0), torch.arange(4.0))
    covariance = 0.25 * torch.exp(-torch.cdist(coords, coords) / 2.0) + 1e-2 * torch.eye(D)
    mu = 0.1 * torch.randn(D, generator=g)
    prior = GaussianPrior(mu.double(), covariance.double(), SHAPE)
    A = torch.randn(8, D, generator=g, dtype=torch.float64) / math.sqrt(8)
    sigma_y = 0.1
    op = matrix_operator(A, noise_sigma=sigma_y, shape=SHAPE)
    x0 = (prior.mu + torch.linalg.cholesky(prior.covariance) @ torch.randn(D, generator=g, dtype=torch.float64)).view(
        1, *SHAPE
    )
    y = op.measure(x0.float(), torch.Generator().manual_seed(1))
    return prior, op, A, y, sigma_y


def test_poly_sigmas_is_edm_grid():
    s = poly_sigmas(100.0, 0.1, 4)
    r = torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    expected = (100 ** (1 / 7) + r * (0.1 ** (1 / 7) - 100 ** (1 / 7))) ** 7
    torch.testing.assert_close(s, expected)
    assert s[0].item() == pytest.approx(100) and s[-1].item() == pytest.approx(0.1)


def test_edm_denoiser_is_the_posterior_mean(problem):
    prior, op, *_ = problem
    solver = DAPS(prior, op, progress=False)
    predict, edm = solver.predictor(), solver.denoiser
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for t in (20, 300, 900):
        sigma = solver.denoiser.sigma(t)
        abar = prior.schedule.alphas_cumprod[t].item()
        assert sigma == pytest.approx(math.sqrt((1 - abar) / abar), rel=1e-12)
        # x = x0 + sigma n: E[x0 | x] = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu)
        gain = prior.covariance @ torch.linalg.inv(prior.covariance + sigma**2 * torch.eye(D, dtype=torch.float64))
        expected = prior.mu + (x.flatten(1) - prior.mu) @ gain.T
        got = edm.denoise(x, sigma, predict(edm.vp_input(x, sigma), t).eps).flatten(1)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def _mcmc_law(P, m, x0_hat, lr, K, algo, momentum):
    """Exact mean / covariance of the chain's iterate after K steps (linear-Gaussian recursions, float64)."""
    d = len(m)
    eye = torch.eye(d, dtype=torch.float64)
    if algo == "langevin":  # x' = x - lr P (x - m) + sqrt(2 lr) z
        B = eye - lr * P
        mean, cov = x0_hat.clone(), torch.zeros(d, d, dtype=torch.float64)
        for _ in range(K):
            mean = m + B @ (mean - m)
            cov = B @ cov @ B.T + 2 * lr * eye
        return mean, cov
    # HMC: v' = a v - h P (x - m) + c z,  x' = x + h v'   (h = sqrt(lr), a = momentum, c = sqrt(2 (1 - a)))
    h, a, c = math.sqrt(lr), momentum, math.sqrt(2 * (1 - momentum))
    # state s = (x - m, v): s' = M s + N z
    M = torch.cat([torch.cat([eye - lr * P, h * a * eye], 1), torch.cat([-h * P, a * eye], 1)], 0)
    N = torch.cat([h * c * eye, c * eye], 0)
    mean = torch.cat([x0_hat - m, torch.zeros(d, dtype=torch.float64)])
    cov = torch.zeros(2 * d, 2 * d, dtype=torch.float64)
    cov[d:, d:] = eye  # v_0 ~ N(0, I)
    for _ in range(K):
        mean = M @ mean
        cov = M @ cov @ M.T + N @ N.T
    return m + mean[:d], cov[:d, :d]


@pytest.mark.parametrize("algo", ["langevin", "hmc"])
def test_one_mcmc_call_samples_its_gaussian_target(problem, algo):
    prior, op, A, y, _ = problem
    tau, lr, K, n = 0.5, 5e-3, 150, 3000
    solver = DAPS(prior, op, lr=lr, tau=tau, mcmc_steps=K, lr_min_ratio=0.5, mc_algo=algo, momentum=0.6, progress=False)
    i = 190
    r = solver.sigmas[i]
    x0_hat = (prior.mu + 0.3 * torch.randn(D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)).float()
    samples = solver.mcmc(
        x0_hat.view(1, *SHAPE).expand(n, *SHAPE), y.expand(n, -1, -1, -1), i, torch.Generator().manual_seed(7)
    )
    samples = samples.flatten(1).double()
    lr_i = solver.step_size(i)
    assert lr_i == pytest.approx(lr * (1 + i / 201 * (0.5 - 1)))

    # the target: precision P = 2 A^T A / tau^2 + I / r^2, mean m = P^-1 (2 A^T y / tau^2 + x0_hat / r^2)
    eye = torch.eye(D, dtype=torch.float64)
    P = 2 * A.T @ A / tau**2 + eye / r**2
    m = torch.linalg.solve(P, 2 * A.T @ y.flatten().double() / tau**2 + x0_hat.double() / r**2)
    mean_k, cov_k = _mcmc_law(P, m, x0_hat.double(), lr_i, K, algo, 0.6)

    # sampling error of the mean of n draws: ~ sqrt(diag(cov) / n); 5 standard errors per coordinate
    stderr = (cov_k.diagonal() / n).sqrt()
    assert ((samples.mean(0) - mean_k).abs() / stderr).max() < 5
    cov_hat = torch.cov(samples.T)
    # relative Frobenius error of a sample covariance ~ sqrt(2 / n) ~ 0.026 at n = 3000 (d = 16: a few times more)
    assert (cov_hat - cov_k).norm() / cov_k.norm() < 0.12

    # and the K-step law is the target up to the step-size bias. Langevin: the stationary law of
    # x' = x - lr P (x - m) + sqrt(2 lr) z has covariance (P (I - lr P / 2))^-1 (per eigenvalue p:
    # 2 lr / (1 - (1 - lr p)^2)), mean m; after K steps the transient (I - lr P)^K is negligible here.
    target_cov = torch.linalg.inv(P)
    if algo == "langevin":
        assert torch.linalg.eigvalsh(P).max() * lr_i < 1
        biased = torch.linalg.inv(P @ (eye - lr_i * P / 2))
        torch.testing.assert_close(cov_k, biased, rtol=1e-3, atol=1e-8)
    assert (mean_k - m).norm() < 1e-3 * m.norm()
    # measured: K-step law vs target 5.1 % (Langevin, lr p in 0.09 .. 0.19: the bias above) / 3.1 % (HMC);
    # the samples' covariance vs target 9.4 % / 8.4 % (sampling noise added)
    assert (cov_k - target_cov).norm() / target_cov.norm() < 0.08
    assert (cov_hat - target_cov).norm() / target_cov.norm() < 0.15


def test_daps_samples_near_the_posterior(problem):
    """The whole sampler against p(x0 | y). DAPS is approximate: p(x0 | x_t) ~ N(x0_hat, r_t^2) with r_t = sigma_t
    is wider than the true p(x0 | x_t) (for this prior its std is sigma_t sqrt(Sigma / (Sigma + sigma_t^2)) < sigma_t),
    and the last MCMC runs at r ~ 0.1, so the samples are over-dispersed. Measured with these settings
    (400 samples): mean error <= 0.36 posterior standard deviations (0.15 on average; the prior mean is 2.4 away),
    per-coordinate variance ratio 1.37 .. 2.03. Asserted with margin."""
    prior, op, A, y, sigma_y = problem
    mean, cov = prior.posterior(A, y, sigma_y)
    n = 400
    # tau^2 / 2 = sigma_y^2: the official data term ||y - A x||^2 / tau^2 is a Gaussian likelihood of variance tau^2/2
    solver = DAPS(
        prior,
        op,
        lr=1e-3,
        tau=math.sqrt(2) * sigma_y,
        num_steps=50,
        ode_steps=5,
        mcmc_steps=40,
        lr_min_ratio=1.0,
        progress=False,
    )
    xs = solver.restore(y.expand(n, -1, -1, -1), generators_from_seeds(range(n))).flatten(1).double()
    post_std = cov.diagonal().sqrt()
    mean_err = ((xs.mean(0) - mean[0]) / post_std).abs()
    var_ratio = xs.var(0) / cov.diagonal()
    prior_err = ((prior.mu - mean[0]) / post_std).abs()
    assert mean_err.max() < 0.6 and mean_err.max() < 0.25 * prior_err.max()
    assert var_ratio.min() > 0.8 and var_ratio.max() < 2.6
