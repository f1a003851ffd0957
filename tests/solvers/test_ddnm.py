"""DDNM / DDNM+: the official loop (wyhuai/DDNM ``functions/svd_ddnm.py``) written out here on a random-weight ADM in
float64, A x = y exactly without noise, time-travel's schedule, batch invariance and where PAG enters."""

import itertools
import math

import pytest
import torch

from operators import make_operator
from operators.random import generators_from_seeds, randn
from priors import GaussianPrior, linear_operator_matrix, perturbed_self_attention
from solvers import DDNM, PAG
from solvers.ddnm import travel_schedule

LAYERS = ("input_blocks.3.1", "middle_block.1")


def get_schedule_jump(T_sampling, travel_length, travel_repeat):
    """RePaint's schedule as the official code has it (guided_diffusion/diffusion.py)."""
    jumps = {}
    for j in range(0, T_sampling - travel_length, travel_length):
        jumps[j] = travel_repeat - 1
    t, ts = T_sampling, []
    while t >= 1:
        t = t - 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] = jumps[t] - 1
            for _ in range(travel_length):
                t = t + 1
                ts.append(t)
    ts.append(-1)
    return ts


def official_loop(prior, mask, y, gens, shape, n, eta, sigma_y=0.0, travel=(1, 1), pag=None):
    """ddnm_diffusion / ddnm_plus_diffusion for inpainting (A = A^+ = diag(mask)); DDNM+ in the scalar form of
    simplified_ddnm_plus with sigma_t = sqrt(1 - abar_next) (the paper's, ddnm_plus_diffusion's). ``pag``: (s, layers):
    the correction on the unguided x0, the null-space part and the direction from the guided prediction."""
    abar = prior.schedule.alphas_cumprod
    skip = 1000 // n
    x = randn(shape, gens, dtype=torch.float64)
    times = get_schedule_jump(n, *travel)
    x0_preds, xs = [], []
    with torch.no_grad():
        for i, j in itertools.pairwise(times):
            i, j = i * skip, j * skip
            if j < 0:
                j = -1
            at_next = 1.0 if j < 0 else float(abar[j])
            if j < i:
                z = randn(shape, gens, dtype=torch.float64)
                at = float(abar[i])
                et = prior(x, i).eps
                x0_t = (x - et * math.sqrt(1 - at)) / math.sqrt(at)
                sigma_t = math.sqrt(1 - at_next)
                a_t = math.sqrt(at_next)
                if sigma_t >= a_t * sigma_y:
                    lambda_t, gamma_t = 1.0, math.sqrt(sigma_t**2 - (a_t * sigma_y) ** 2)
                else:
                    lambda_t, gamma_t = sigma_t / (a_t * sigma_y), 0.0
                x0_t_hat = x0_t - lambda_t * mask * (mask * x0_t - y)
                if pag is not None:
                    s, layers = pag
                    with perturbed_self_attention(prior, layers):
                        ep = prior(x, i).eps
                    et = et + s * (et - ep)
                    x0_g = (x - et * math.sqrt(1 - at)) / math.sqrt(at)
                    x0_t_hat = x0_t_hat + (1 - mask) * (x0_g - x0_t)
                    x0_t = x0_g
                x = a_t * x0_t_hat + gamma_t * (eta * z + math.sqrt(1 - eta**2) * et)
                x0_preds.append(x0_t)
                xs.append(x)
            else:  # time-travel back
                x = math.sqrt(at_next) * x0_preds[-1] + randn(shape, gens, dtype=torch.float64) * math.sqrt(1 - at_next)
    return xs


def run(solver, y, seeds=(3, 4, 5)):
    seen = []
    out = solver.restore(y, generators_from_seeds(list(seeds)), callback=lambda s: seen.append(s.x_t), callback_every=1)
    return out, seen


@pytest.mark.parametrize(
    ("sigma", "travel", "pag"),
    [(0.0, (1, 1), False), (0.1, (1, 1), False), (0.0, (1, 3), False), (0.0, (1, 1), True), (0.1, (1, 2), True)],
)
def test_chain_equals_the_official_loop(prior, images, sigma, travel, pag, box):
    op = box(sigma)
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    n, eta = 8, 0.85
    reference = official_loop(
        prior, op.mask.double(), y, generators_from_seeds([3, 4, 5]), images.shape, n, eta, sigma, travel,
        (2.0, LAYERS) if pag else None,
    )  # fmt: skip
    solver = DDNM(
        prior, op, eta=eta, num_steps=n, travel_length=travel[0], travel_repeat=travel[1],
        pag=PAG(2.0, LAYERS) if pag else None, progress=False,
    )  # fmt: skip
    _, ours = run(solver, y)
    # a step followed by a jump returns the re-noised iterate; the reference keeps the step's own x in xs
    normal = [i for i, back in enumerate(solver.travel_to) if back is None]
    assert len(ours) == len(reference)
    for i in normal:
        torch.testing.assert_close(ours[i], reference[i], rtol=0, atol=1e-10)
    torch.testing.assert_close(ours[-1], reference[-1], rtol=0, atol=1e-10)


def test_travel_schedule_is_the_official_one():
    for n, length, repeat in [(10, 1, 1), (10, 1, 3), (12, 2, 3), (20, 5, 2)]:
        ts = get_schedule_jump(n, length, repeat)
        pairs = list(itertools.pairwise(ts))
        expected = []
        for a, b in pairs:
            if b < a:
                expected.append([a, -1])
            else:
                expected[-1][1] = b
        assert travel_schedule(n, length, repeat) == [tuple(e) for e in expected]
    assert len(travel_schedule(10, 1, 3)) == 10 + 9 * 2  # 9 jump points, each repeated twice


@pytest.mark.parametrize("pag", [False, True])
@pytest.mark.parametrize("task", ["box_inpaint", "super_resolution"])
def test_output_satisfies_the_measurement_exactly(prior, images, task, pag, box):
    """Noiseless: the last iterate (before the final clamp) is x0_y, and A x0_y = A A^+ y = y (y in range(A))."""
    op = box() if task == "box_inpaint" else make_operator(task, factor=4, noise={"name": "none"}).double()
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    solver = DDNM(prior, op, eta=0.85, num_steps=5, pag=PAG(3.0, LAYERS) if pag else None, progress=False)
    _, seen = run(solver, y)
    residual = (op(seen[-1]) - y).abs().max().item()
    assert residual < 1e-10, residual
    assert (op(seen[-2]) - y).abs().max().item() > 1e-3  # an earlier iterate is noisy: the check can fail


def test_guided_ablation_equals_default_without_noise(prior, images, box):
    """Noiseless, the correction is an affine projection: correcting x0_guided (x0_from="guided") gives the same
    step as correcting x0_hat and adding the null-space part of the shift (documented in solvers/ddnm.py)."""
    op = box()
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    a, _ = run(DDNM(prior, op, num_steps=4, pag=PAG(2.0, LAYERS), progress=False), y)
    b, _ = run(DDNM(prior, op, num_steps=4, pag=PAG(2.0, LAYERS, x0_from="guided"), progress=False), y)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    noisy = box(0.5)
    y = noisy.measure(images, generators_from_seeds([5, 6, 7]))
    a, _ = run(DDNM(prior, noisy, num_steps=4, pag=PAG(2.0, LAYERS), progress=False), y)
    b, _ = run(DDNM(prior, noisy, num_steps=4, pag=PAG(2.0, LAYERS, x0_from="guided"), progress=False), y)
    assert (a - b).abs().max() > 1e-6  # DDNM+ shrinks (lambda_t < 1): there the two differ


def test_pag_scale_zero_is_bit_identical_to_no_pag(prior, images, box):
    op = box(0.1)
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    base, _ = run(DDNM(prior, op, num_steps=4, travel_repeat=2, progress=False), y)
    zero, _ = run(DDNM(prior, op, num_steps=4, travel_repeat=2, pag=PAG(0.0, LAYERS), progress=False), y)
    assert torch.equal(base, zero)


def test_batch_of_n_equals_n_single_runs(prior, images, box):
    op = box(0.1)
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    solver = DDNM(prior, op, num_steps=4, travel_repeat=2, pag=PAG(1.0, LAYERS), progress=False)
    batch, _ = run(solver, y)
    for k in range(3):
        single = DDNM(prior, box(0.1, [k]), num_steps=4, travel_repeat=2, pag=PAG(1.0, LAYERS), progress=False)
        one, _ = run(single, y[k : k + 1], seeds=(3 + k,))
        torch.testing.assert_close(one, batch[k : k + 1], rtol=0, atol=1e-12)


def test_refuses_what_it_cannot_run(prior, box):
    with pytest.raises(ValueError, match="eta"):
        DDNM(prior, box(), eta=1.5, progress=False)
    with pytest.raises(ValueError, match="travel"):
        DDNM(prior, box(), travel_length=0, progress=False)


def test_noisy_gaussian_deblurring_on_a_gaussian_prior():
    """Noisy Gaussian blur (std 3, sigma_y 0.05) on a smooth Gaussian prior (analytic posterior mean): with the
    default pinv_rcond (the official 3e-2) the samples are finite, fit y to a few sigma_y and their mean is closer to
    the posterior mean than with the exact A^+ (pinv_rcond=None), which amplifies the noise on the blur's near-zero
    singular values. Measured here: RMS residual 0.17 vs 0.35, mean error (RMS per pixel) 0.57 vs 0.93 (the prior's
    std is 0.5: the scalar DDNM+ lambda_t is still far from the posterior on so ill-posed a blur)."""
    shape, sigma, n = (1, 8, 8), 0.05, 16
    d = 64
    coords = torch.cartesian_prod(torch.arange(8.0), torch.arange(8.0))
    covariance = (0.25 * torch.exp(-torch.cdist(coords, coords) / 3.0) + 1e-3 * torch.eye(d)).double()
    gauss = GaussianPrior(torch.zeros(d, dtype=torch.float64), covariance, shape)
    op = make_operator("gaussian_blur", kernel_size=5, sigma=3.0, noise={"name": "gaussian", "sigma": sigma}).double()
    g = torch.Generator().manual_seed(0)
    x0 = (torch.linalg.cholesky(covariance) @ torch.randn(d, generator=g, dtype=torch.float64)).view(1, *shape)
    y = op.measure(x0, torch.Generator().manual_seed(1))
    A = linear_operator_matrix(op, shape)
    mean, _ = gauss.posterior(A, y, sigma)
    errors, residuals = {}, {}
    for rcond in (3e-2, None):
        solver = DDNM(gauss, op, num_steps=50, pinv_rcond=rcond, progress=False)
        xs = solver.restore(y.expand(n, -1, -1, -1), generators_from_seeds(range(n)))
        assert torch.isfinite(xs).all()
        errors[rcond] = (xs.flatten(1).mean(0) - mean[0]).norm().item() / math.sqrt(d)
        residuals[rcond] = (op(xs) - y).pow(2).mean().sqrt().item()
    assert residuals[3e-2] < 4 * sigma and residuals[None] > 1.5 * residuals[3e-2], residuals
    assert errors[None] > 1.4 * errors[3e-2], errors
