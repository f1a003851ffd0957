"""DiffPIR: the official algorithm's equations on a random-weight ADM, the Gaussian posterior, batch invariance,
and where PAG's guided prediction enters."""

import copy
import math

import numpy as np
import pytest
import torch

from operators import make_operator
from operators.random import generators_from_seeds, randn
from priors import GaussianPrior, linear_operator_matrix, perturbed_self_attention
from priors.adm import ADMPrior
from solvers import PAG, NoisePredictor, StepContext, sample
from solvers.diffpir import DiffPIR, quad_timesteps

LAYERS = ("input_blocks.3.1", "middle_block.1")
SHAPE, D = (1, 8, 8), 64


@pytest.fixture(scope="module")
def prior():
    return ADMPrior.from_preset("test", init="random", generator=torch.Generator().manual_seed(0)).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def box(n=3):
    return make_operator("box_inpaint", image_size=32, hole=12, margin=2, generator=generators_from_seeds(range(n)))


def test_quad_timesteps_are_the_official_sequence():
    # official: seq = [int(s) for s in sqrt(linspace(0, 1000^2, n))], seq[-1] -= 1, t = 999 - seq
    ts = quad_timesteps(1000, 100)
    assert len(ts) == 100 and ts[0] == 999 and ts[1] == 999 - 100 and ts[-1] == 0
    assert ts[-2] == 999 - int(math.sqrt(98 / 99) * 1000)
    assert quad_timesteps(1000, 20)[:3] == [999, 999 - int(1000 / math.sqrt(19)), 999 - int(1000 * math.sqrt(2 / 19))]
    with pytest.raises(ValueError, match="too many"):
        quad_timesteps(1000, 1000)


def test_chain_equals_the_official_inpainting_loop(prior, images):
    """The official main_ddpir_inpainting.py loop, written out here, on the same noise draws (noisy y)."""
    op = box()
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    lam, zeta, n = 3.0, 0.4, 8
    sigma = max(0.001, 0.05 / 2)  # the official noise_level_img is on [0, 1]: half our sigma on [-1, 1]
    abar = prior.schedule.alphas_cumprod
    mask = op.mask

    gens = generators_from_seeds([3, 4, 5])
    x = randn(images.shape, gens)
    seq = [int(s) for s in np.sqrt(np.linspace(0, 1000**2, n))]
    seq[-1] -= 1
    reference = []
    with torch.no_grad():
        for i in range(n - 1):
            noise = randn(images.shape, gens)
            t_i, t_im1 = 999 - seq[i], 999 - seq[i + 1]
            a, a_prev = float(abar[t_i]), float(abar[t_im1])
            eps_model = prior(x, t_i).eps
            x0 = ((x - math.sqrt(1 - a) * eps_model) / math.sqrt(a)).clamp(-1, 1)  # clip_denoised=True
            rho = lam * sigma**2 / ((1 - a) / a)
            x0 = (mask * y + rho * x0) / (mask + rho)
            eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
            x = (
                math.sqrt(a_prev) * x0
                + math.sqrt(1 - zeta) * math.sqrt(1 - a_prev) * eps
                + math.sqrt(zeta) * math.sqrt(1 - a_prev) * noise
            )
            reference.append(x)

    seen = {}
    solver = DiffPIR(prior, op, lam=lam, zeta=zeta, num_steps=n, progress=False)
    solver.restore(
        y, generators_from_seeds([3, 4, 5]), callback=lambda info: seen.setdefault(info.i, info.x_t), callback_every=1
    )
    for i in range(n - 1):
        torch.testing.assert_close(seen[i], reference[i], rtol=0, atol=2e-5)


@pytest.mark.parametrize("name", ["gaussian_blur", "super_resolution"])
def test_data_step_on_the_official_scale(name):
    """The official code solves SR / deblur's data step on [0, 1] images; these operators map constants to
    constants (rows sum to 1), so solving on [-1, 1] and mapping back is the same step."""
    torch.set_default_dtype(torch.float64)
    op = make_operator(name, **({"kernel_size": 5, "sigma": 1.0} if name == "gaussian_blur" else {"factor": 2}))
    g = torch.Generator().manual_seed(2)
    x0, x = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    y = op(x) + 0.05 * torch.randn(op(x).shape, generator=g)
    A = linear_operator_matrix(op, (3, 8, 8))
    rho = 0.7
    lhs = A.T @ A + rho * torch.eye(A.shape[1])
    unit = torch.linalg.solve(lhs, (((y + 1) / 2).flatten(1) @ A + rho * ((x0 + 1) / 2).flatten(1)).T).T
    from solvers.proximal import data_prox

    ours = data_prox(op, y, x0, rho, max_iter=200, tol=1e-12)
    torch.testing.assert_close(ours.flatten(1), unit * 2 - 1, rtol=0, atol=1e-9)


def test_rho_is_lambda_sigma_over_sigma_t(prior):
    op = make_operator("super_resolution", factor=4, noise={"name": "gaussian", "sigma": 0.1})
    solver = DiffPIR(prior, op, lam=7.0, num_steps=10, progress=False)
    a = float(prior.schedule.alphas_cumprod[solver.schedule.timesteps[3]])
    assert solver.sigma_y == pytest.approx(12.75 / 255)  # the official noise_level_img for sigma 0.1 on [-1, 1]
    assert solver.rho(3) == pytest.approx(7.0 * (12.75 / 255) ** 2 / ((1 - a) / a), rel=1e-12)
    noiseless = make_operator("super_resolution", factor=4, noise={"name": "none"})
    assert DiffPIR(prior, noiseless, num_steps=10, progress=False).sigma_y == 0.001  # the official floor


def test_gaussian_posterior(matrix_operator):
    """Gaussian prior, generic linear operator (CG data step): close to the closed-form posterior."""
    g = torch.Generator().manual_seed(0)
    coords = torch.cartesian_prod(torch.arange(8.0), torch.arange(8.0))
    covariance = (0.25 * torch.exp(-torch.cdist(coords, coords) / 3.0) + 1e-3 * torch.eye(D)).double()
    prior = GaussianPrior(torch.zeros(D, dtype=torch.float64), covariance, SHAPE)
    A = torch.randn(32, D, generator=g, dtype=torch.float64) / math.sqrt(32)
    op = matrix_operator(A, noise_sigma=0.05, shape=SHAPE)
    x0 = (torch.linalg.cholesky(covariance) @ torch.randn(D, generator=g, dtype=torch.float64)).view(1, *SHAPE)
    y = op.measure(x0.float(), torch.Generator().manual_seed(1))
    mean, cov = prior.posterior(A, y, 0.05)

    n = 64
    xs = DiffPIR(prior, op, lam=7.0, zeta=0.3, num_steps=100, progress=False).restore(
        y.expand(n, -1, -1, -1), generators_from_seeds(range(n))
    )
    unconditional = sample(prior, n, generators_from_seeds(range(n)), num_steps=100, progress=False)
    error = (xs.flatten(1).double().mean(0) - mean[0]).norm()
    unconditional_error = (unconditional.flatten(1).double().mean(0) - mean[0]).norm()
    assert error < 0.25 * unconditional_error, (error, unconditional_error)
    exact = mean + torch.randn(4000, D, generator=torch.Generator().manual_seed(5), dtype=torch.float64) @ (
        torch.linalg.cholesky(cov).T
    )
    exact_residual = (y.flatten(1).double() - exact @ A.T).norm(dim=1).mean()
    residual = (y - op(xs)).flatten(1).norm(dim=1).mean()
    assert 0.5 * exact_residual < residual < 2.0 * exact_residual, (residual, exact_residual)
    spread = (xs.flatten(1).double() - mean).norm(dim=1).mean()
    assert 0.7 < spread / cov.trace().sqrt() < 1.3


@pytest.mark.parametrize("task", ["box_inpaint", "gaussian_blur", "super_resolution"])
def test_batch_of_n_equals_n_single_runs(prior, images, task):
    ops = {
        "box_inpaint": lambda seeds: make_operator(
            "box_inpaint", image_size=32, hole=12, margin=2, generator=generators_from_seeds(seeds)
        ),
        "gaussian_blur": lambda seeds: make_operator("gaussian_blur", kernel_size=9, sigma=1.0),
        "super_resolution": lambda seeds: make_operator("super_resolution", factor=4),
    }[task]
    # float64: Tweedie multiplies the network's rounding by 1 / sqrt(abar) (156 at t = 999), which in float32
    # makes batched and single convolutions differ by ~1e-4 after one step
    prior = copy.deepcopy(prior).double()
    op = ops([0, 1, 2]).double()
    y = op.measure(images.double(), generators_from_seeds([5, 6, 7]))
    batch = DiffPIR(prior, op, num_steps=4, progress=False).restore(y, generators_from_seeds([10, 11, 12]))
    for i in range(3):
        single_op = ops([i]).double()
        alone = DiffPIR(prior, single_op, num_steps=4, progress=False).restore(
            y[i : i + 1], generators_from_seeds([10 + i])
        )
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-6)


def test_pag_scale_zero_is_bit_identical_to_no_pag(prior, images):
    op = box()
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    base = DiffPIR(prior, op, num_steps=4, progress=False).restore(y, generators_from_seeds([3, 4, 5]))
    zero = DiffPIR(prior, op, num_steps=4, pag=PAG(0.0, LAYERS), progress=False).restore(
        y, generators_from_seeds([3, 4, 5])
    )
    assert torch.equal(base, zero)


@pytest.mark.parametrize("x0_from", ["unguided", "guided"])
def test_pag_step_by_hand(prior, images, x0_from):
    """unguided: the data step's anchor is x0 of eps and the guidance shift is added after it;
    guided: the anchor is x0 of eps_guided."""
    op = box()
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    lam, zeta, s = 5.0, 0.3, 2.0
    solver = DiffPIR(prior, op, lam=lam, zeta=zeta, num_steps=10, pag=PAG(s, LAYERS, x0_from=x0_from), progress=False)
    sched, i = solver.schedule, 4
    t = int(sched.timesteps[i])
    x_t = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        eps = prior(x_t, t).eps
        with perturbed_self_attention(prior, LAYERS):
            eps_perturbed = prior(x_t, t).eps
    eps_guided = eps + s * (eps - eps_perturbed)
    a, a_prev = float(sched.alphas_cumprod[i]), float(sched.alphas_cumprod_prev[i])

    def x0_of(e):
        return ((x_t - math.sqrt(1 - a) * e) / math.sqrt(a)).clamp(-1, 1)

    rho = lam * 0.025**2 * a / (1 - a)
    mask = op.mask
    if x0_from == "unguided":
        x0 = (mask * y + rho * x0_of(eps)) / (mask + rho) + (x0_of(eps_guided) - x0_of(eps))
    else:
        x0 = (mask * y + rho * x0_of(eps_guided)) / (mask + rho)
    eps_hat = (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)
    expected = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * (
        math.sqrt(1 - zeta) * eps_hat + math.sqrt(zeta) * noise
    )
    x_prev, _ = solver.step(StepContext(NoisePredictor(prior, solver.pag), y, noise=noise), i, x_t)
    torch.testing.assert_close(x_prev, expected, rtol=0, atol=2e-5)


def test_bad_setup(prior):
    with pytest.raises(ValueError, match="zeta"):
        DiffPIR(prior, box(), zeta=1.5)
    with pytest.raises(ValueError, match="sigma_y"):
        DiffPIR(prior, make_operator("super_resolution", factor=4, noise={"name": "poisson"}))
    with pytest.raises(ValueError, match="measurement y"):
        DiffPIR(prior, box(), num_steps=3, progress=False).restore(None, generators_from_seeds([0]))
