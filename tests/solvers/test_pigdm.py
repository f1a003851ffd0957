"""PiGDM: the official loop (NVlabs/RED-diff ``algos/pgdm.py``) written out here on a random-weight ADM in float64,
the noisy guidance against a dense solve, the Gaussian posterior, batch invariance and where PAG enters."""

import math

import pytest
import torch

from operators import make_operator
from operators.random import generators_from_seeds, randn
from priors import GaussianPrior, linear_operator_matrix, perturbed_self_attention
from solvers import PAG, PiGDM, sample

LAYERS = ("input_blocks.3.1", "middle_block.1")
SHAPE, D = (1, 8, 8), 64


def official_loop(prior, mask, y, gens, shape, num_steps, eta, weight, sigma_y=0.0, pag=None, x0_from="unguided"):
    """PGDM.sample with awd=True for inpainting (H = H_pinv = diag(mask)); sigma_y > 0: the paper's
    (r_t^2 A A^T + sigma_y^2 I)^{-1}, scaled by r_t^2 (solvers/pigdm.py). ``pag``: (s, layers)."""
    skip = 1000 // num_steps
    ts = list(range(0, 1000, skip))
    ss = [-1, *ts[:-1]]
    abar = prior.schedule.alphas_cumprod

    def alpha(t):
        return 1.0 if t < 0 else float(abar[t])

    xt = randn(shape, gens, dtype=torch.float64)
    xs = []
    for ti, si in zip(reversed(ts), reversed(ss)):
        z = randn(shape, gens, dtype=torch.float64)
        alpha_t, alpha_s = alpha(ti), alpha(si)
        c1 = math.sqrt((1 - alpha_t / alpha_s) * (1 - alpha_s) / (1 - alpha_t)) * eta
        c2 = math.sqrt((1 - alpha_s) - c1**2)
        xt = xt.clone().requires_grad_(True)
        et = prior(xt, ti).eps
        x0_pred = (xt - et * math.sqrt(1 - alpha_t)) / math.sqrt(alpha_t)
        if pag is not None:
            s, layers = pag
            with perturbed_self_attention(prior, layers), torch.set_grad_enabled(x0_from == "guided"):
                ep = prior(xt, ti).eps
            eg = et + s * (et - ep)
            x0_g = (xt - eg * math.sqrt(1 - alpha_t)) / math.sqrt(alpha_t)
            if x0_from == "guided":
                x0_pred = x0_g
        if sigma_y == 0:
            mat = mask * y - mask * (mask * x0_pred)
        else:
            r2 = 1 - alpha_t
            mat = r2 * mask * (y - mask * x0_pred) / (r2 * mask + sigma_y**2)
        mat_x = (mat.detach() * x0_pred).sum()
        grad_term = torch.autograd.grad(mat_x, xt, retain_graph=True)[0].detach()
        coeff = math.sqrt(alpha_s) * math.sqrt(alpha_t) * weight
        if pag is not None:
            x0_pred, et = x0_g, eg
        xt = (math.sqrt(alpha_s) * x0_pred + c1 * z + c2 * et + grad_term * coeff).detach()
        xs.append(xt)
    return xs


def run(solver, y, seeds=(3, 4, 5)):
    seen = []
    out = solver.restore(y, generators_from_seeds(list(seeds)), callback=lambda s: seen.append(s.x_t), callback_every=1)
    return out, seen


@pytest.mark.parametrize(
    ("sigma", "eta", "pag", "x0_from"),
    [(0.0, 0.0, False, "unguided"), (0.0, 0.5, False, "unguided"), (0.1, 0.5, False, "unguided"),
     (0.0, 0.5, True, "unguided"), (0.1, 0.0, True, "guided")],
)  # fmt: skip
def test_chain_equals_the_official_loop(prior, images, sigma, eta, pag, x0_from, box):
    op = box(sigma)
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    n, weight = 5, 0.7  # a divisor of 1000: the official range(0, 1000, 1000 // n) has n steps
    reference = official_loop(
        prior, op.mask.double(), y, generators_from_seeds([3, 4, 5]), images.shape, n, eta, weight, sigma,
        (2.0, LAYERS) if pag else None, x0_from,
    )  # fmt: skip
    pag_settings = PAG(2.0, LAYERS, x0_from=x0_from) if pag else None
    _, ours = run(PiGDM(prior, op, weight=weight, eta=eta, num_steps=n, pag=pag_settings, progress=False), y)
    assert len(ours) == len(reference) == n
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["super_resolution", "gaussian_blur"])
def test_solve_gram_is_the_dense_solve(name):
    """The operators' (r^2 A A^T + s^2 I)^{-1} (CG default) against a dense solve of the same matrix."""
    op = make_operator(name, **({"kernel_size": 5, "sigma": 1.0} if name == "gaussian_blur" else {"factor": 2}))
    op = op.double()
    A = linear_operator_matrix(op, (3, 8, 8))
    g = torch.Generator().manual_seed(2)
    v = torch.randn(2, A.shape[0], generator=g, dtype=torch.float64)
    r2, s2 = 0.3, 0.05**2
    dense = torch.linalg.solve(r2 * A @ A.T + s2 * torch.eye(A.shape[0], dtype=torch.float64), v.T).T
    like = op(torch.zeros(2, 3, 8, 8, dtype=torch.float64))
    ours = op.solve_gram(v.view_as(like), r2, s2, max_iter=500, tol=1e-13)
    torch.testing.assert_close(ours.flatten(1), dense, rtol=0, atol=1e-8)


def test_solve_gram_inpainting_closed_form(box):
    op = box()
    g = torch.Generator().manual_seed(3)
    v = torch.randn(3, 3, 32, 32, generator=g, dtype=torch.float64)
    m = op.mask.double().expand_as(v)
    torch.testing.assert_close(op.solve_gram(v, 0.4, 0.01), v / (0.4 * m + 0.01), rtol=0, atol=0)


def test_gaussian_posterior(matrix_operator):
    """Gaussian prior (analytic posterior), a generic linear operator, noisy measurements (CG solves): the mean of
    PiGDM's samples is much closer to the posterior mean than the prior's samples and the residual ||y - A x|| is
    of the exact posterior's order. PiGDM's Gaussian p(x0 | x_t) with isotropic variance r_t^2 is not exact for a
    correlated prior, so (as DPS's test) only these loose properties hold, not the posterior itself: here its
    samples fit y more tightly than the posterior's (mean residual 0.13 vs 0.28 at weight 1, 100 steps, eta 1)."""
    g = torch.Generator().manual_seed(0)
    coords = torch.cartesian_prod(torch.arange(8.0), torch.arange(8.0))
    covariance = (0.25 * torch.exp(-torch.cdist(coords, coords) / 3.0) + 1e-3 * torch.eye(D)).double()
    gauss = GaussianPrior(torch.zeros(D, dtype=torch.float64), covariance, SHAPE)
    A = torch.randn(32, D, generator=g, dtype=torch.float64) / math.sqrt(32)
    op = matrix_operator(A, noise_sigma=0.05, shape=SHAPE)
    x0 = (torch.linalg.cholesky(covariance) @ torch.randn(D, generator=g, dtype=torch.float64)).view(1, *SHAPE)
    y = op.measure(x0, torch.Generator().manual_seed(1))
    mean, cov = gauss.posterior(A, y, 0.05)
    n = 64
    xs = PiGDM(gauss, op, weight=1.0, eta=1.0, num_steps=100, progress=False).restore(
        y.expand(n, -1, -1, -1), generators_from_seeds(range(n))
    )
    unconditional = sample(gauss, n, generators_from_seeds(range(n)), num_steps=100, progress=False)
    error = (xs.flatten(1).double().mean(0) - mean[0]).norm()
    unconditional_error = (unconditional.flatten(1).double().mean(0) - mean[0]).norm()
    assert error < 0.25 * unconditional_error, (error, unconditional_error)
    exact = mean + torch.randn(4000, D, generator=torch.Generator().manual_seed(5), dtype=torch.float64) @ (
        torch.linalg.cholesky(cov).T
    )
    exact_residual = (y.flatten(1).double() - exact @ A.T).norm(dim=1).mean()
    residual = (y - op(xs)).flatten(1).norm(dim=1).mean()
    assert 0.3 * exact_residual < residual < exact_residual, (residual, exact_residual)


def test_pag_scale_zero_is_bit_identical_to_no_pag(prior, images, box):
    op = box(0.1)
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    base, _ = run(PiGDM(prior, op, eta=0.5, num_steps=4, progress=False), y)
    zero, _ = run(PiGDM(prior, op, eta=0.5, num_steps=4, pag=PAG(0.0, LAYERS), progress=False), y)
    assert torch.equal(base, zero)


def test_batch_of_n_equals_n_single_runs(prior, images, box):
    op = box(0.1)
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    batch, _ = run(PiGDM(prior, op, eta=0.5, num_steps=4, pag=PAG(1.0, LAYERS), progress=False), y)
    for k in range(3):
        single = PiGDM(prior, box(0.1, [k]), eta=0.5, num_steps=4, pag=PAG(1.0, LAYERS), progress=False)
        one, _ = run(single, y[k : k + 1], seeds=(3 + k,))
        torch.testing.assert_close(one, batch[k : k + 1], rtol=0, atol=1e-12)


def test_refuses_what_it_cannot_run(prior, box):
    with pytest.raises(ValueError, match="eta"):
        PiGDM(prior, box(), eta=1.5, progress=False)
