"""The denoiser view against closed forms: on a Gaussian prior x0 ~ N(mu, Sigma) the exact noise prediction makes
Tweedie's x0_hat the analytic posterior mean, the score the gradient of the analytic marginal density, and EDM's
D(x; sigma) the posterior mean of x = x0 + sigma n; and the formulas by direct substitution of a known noise."""

import math

import pytest
import torch

from priors import EDMDenoiser, GaussianPrior, NoiseSchedule, VPDenoiser

SHAPE = (1, 3, 3)
D = 9


@pytest.fixture(scope="module")
def prior():
    g = torch.Generator().manual_seed(0)
    root = torch.randn(D, D, generator=g, dtype=torch.float64) / 3
    covariance = root @ root.T + 0.05 * torch.eye(D, dtype=torch.float64)
    return GaussianPrior(0.3 * torch.randn(D, generator=g, dtype=torch.float64), covariance, SHAPE)


@pytest.fixture(scope="module")
def schedule(prior):
    return prior.schedule.sampling([950, 600, 250, 40, 3])


def x_at(seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def marginal(prior, abar: float):
    """x_t ~ N(sqrt(abar) mu, abar Sigma + (1 - abar) I)."""
    cov_t = abar * prior.covariance + (1 - abar) * torch.eye(D, dtype=torch.float64)
    return torch.distributions.MultivariateNormal(math.sqrt(abar) * prior.mu, covariance_matrix=cov_t)


@pytest.mark.parametrize("i", range(5))
def test_x0_hat_is_the_posterior_mean(prior, schedule, i):
    """E[x0 | x_t] = mu + sqrt(abar) Sigma C_t^-1 (x_t - sqrt(abar) mu) (Gaussian conditioning)."""
    x_t = x_at(i)
    t, abar = int(schedule.timesteps[i]), float(schedule.alphas_cumprod[i])
    cov_t = marginal(prior, abar).covariance_matrix
    centred = x_t.flatten(1) - math.sqrt(abar) * prior.mu
    expected = prior.mu + math.sqrt(abar) * torch.linalg.solve(cov_t, centred.T).T @ prior.covariance.T
    got = VPDenoiser(schedule).x0(i, x_t, prior(x_t, t).eps)
    torch.testing.assert_close(got.flatten(1), expected, rtol=1e-9, atol=1e-9)
    clipped = VPDenoiser(schedule, clip_x0=True).x0(i, x_t * 40, prior(x_t * 40, t).eps)
    assert clipped.abs().max() <= 1 and (clipped.abs() == 1).any()  # large inputs: the clamp is active


@pytest.mark.parametrize("i", range(5))
def test_score_is_the_gradient_of_the_marginal_density(prior, schedule, i):
    """score = grad log N(x_t; sqrt(abar) mu, C_t), by autograd of the density (an independent computation), and
    -(x_t - sqrt(abar) x0_hat) / (1 - abar) with x0_hat the posterior mean (Tweedie's formula)."""
    x_t = x_at(10 + i)
    t, abar = int(schedule.timesteps[i]), float(schedule.alphas_cumprod[i])
    x = x_t.flatten(1).clone().requires_grad_(True)
    expected = torch.autograd.grad(marginal(prior, abar).log_prob(x).sum(), x)[0]
    denoiser = VPDenoiser(schedule)
    eps = prior(x_t, t).eps
    got = denoiser.score(i, eps)
    torch.testing.assert_close(got.flatten(1), expected, rtol=1e-8, atol=1e-10)
    tweedie = -(x_t - math.sqrt(abar) * denoiser.x0(i, x_t, eps)) / (1 - abar)
    torch.testing.assert_close(got, tweedie, rtol=1e-8, atol=1e-10)


def test_eps_and_x0_invert_the_forward_process(schedule):
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) n for a known x0 and n: eps(x_t, x0) = n and x0(x_t, n) = x0."""
    denoiser = VPDenoiser(schedule)
    x0, n = x_at(20, 0.5), x_at(21)
    for i in range(len(schedule)):
        abar = float(schedule.alphas_cumprod[i])
        x_t = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * n
        torch.testing.assert_close(denoiser.eps(i, x_t, x0), n, rtol=0, atol=1e-9)
        torch.testing.assert_close(denoiser.x0(i, x_t, n), x0, rtol=0, atol=1e-9 / math.sqrt(abar))
        assert denoiser.sigma(i) == pytest.approx(math.sqrt((1 - abar) / abar), rel=1e-12)


def test_edm_denoiser_is_the_posterior_mean_of_x0_plus_sigma_n(prior):
    """D(x; sigma_t) with eps predicted at x_vp = x / sqrt(1 + sigma_t^2) is E[x0 | x0 + sigma_t n = x]
    = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu)."""
    edm = EDMDenoiser(prior.schedule)
    x = x_at(30, 2.0)
    for t in (5, 200, 700, 999):
        abar = float(prior.schedule.alphas_cumprod[t])
        sigma = edm.sigma(t)
        assert sigma == pytest.approx(math.sqrt((1 - abar) / abar), rel=1e-12)
        x_vp = edm.vp_input(x, sigma)
        torch.testing.assert_close(x_vp, math.sqrt(abar) * x, rtol=1e-12, atol=0)  # the same point, VP-scaled
        gain = prior.covariance @ torch.linalg.inv(prior.covariance + sigma**2 * torch.eye(D, dtype=torch.float64))
        expected = prior.mu + (x.flatten(1) - prior.mu) @ gain.T
        got = edm.denoise(x, sigma, prior(x_vp, t).eps)
        torch.testing.assert_close(got.flatten(1), expected, rtol=1e-9, atol=1e-9)


def test_edm_denoise_by_substitution_and_snapping():
    """x = x0 + sigma n with the true n: D = x - sigma n returns x0 for any continuous sigma; snap picks the
    training level nearest in log sigma and drops repeats."""
    x0, n = x_at(40), x_at(41)
    for sigma in (0.013, 0.7, 3.0, 85.0):
        torch.testing.assert_close(EDMDenoiser.denoise(x0 + sigma * n, sigma, n), x0, rtol=0, atol=1e-12 * sigma)
    schedule = NoiseSchedule.linear()
    edm = EDMDenoiser(schedule)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    table = ((1 - abar) / abar).sqrt()
    assert edm.snap(table[[900, 400, 10]]) == [900, 400, 10]
    between = math.sqrt(table[500].item() * table[501].item())  # the geometric midpoint: just below, then above
    assert edm.snap(torch.tensor([between * 0.999, between * 1.001], dtype=torch.float64)) == [500, 501]
    assert edm.snap(table[[300, 300, 299]]) == [300, 299]
