"""ReSample on a random-weight float64 latent prior: the chain against the official sampler written out here
(soominkwon/resample ``ldm/models/diffusion/ddim.py`` ``resample_sampling``, ``p_sample_ddim``,
``pixel_optimization``, ``latent_optimization``, ``stochastic_resample``; ``ldm_inverse/condition_methods.py``),
image by image as the official runs, against our batch (so batch invariance too); the stochastic resampling
against the product of the two Gaussians it combines; the hard data consistency against the closed form for
inpainting; PAG scale 0 == no PAG bit for bit."""

from __future__ import annotations

import math

import pytest
import torch

from operators import make_operator
from operators.random import generators_from_seeds
from priors import perturbed_self_attention
from solvers import PAG, ReSample
from solvers.resample import adamw_fit, per_image_mse, stochastic_resample

LAYER = "input_blocks.8.1.transformer_blocks.0.attn1"
#: small settings that still visit every branch: 10 DDIM steps (LDM's timesteps 1, 101, ..., 901), resampling at
#: the counted-down indices 6, 4 (pixel phase) and 2 (latent phase), look-ahead of 3, few optimiser iterations
SETTINGS = dict(
    num_steps=10,
    resample_every=2,
    travel_steps=3,
    pixel_lr=0.05,
    pixel_iters=12,
    latent_lr=0.05,
    latent_iters=10,
    latent_patience=3,
    tol=0.12,
    weight_decay=0.01,
)
ZETA, GAMMA = 0.5, 40.0


@pytest.fixture(scope="module")
def prior():
    from priors.sd import random_sd_prior

    return random_sd_prior(seed=0, image_size=32).to(torch.float64)


@pytest.fixture(scope="module")
def problem():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    op = make_operator("gaussian_blur", kernel_size=9, sigma=2.0).double()  # one kernel for all images
    return x, op, op.measure(x, generators_from_seeds([3, 4]))


# -- the official sampler, written out (one image, as sample_condition.py runs) ------------------------------------
def official_resample(prior, op, y, seed, *, paper: bool, pag_scale: float = 0.0, s=SETTINGS):
    """``resample_sampling`` for a batch of one. ``paper=True`` swaps in the two formulas our default follows
    (Tweedie with sqrt(1 - abar) eps; the look-ahead at the abar of the level it is at); else the official ones."""
    S = s["num_steps"]
    T = 1000
    ddim_timesteps = [k + 1 for k in range(0, T, T // S)]  # make_ddim_timesteps("uniform"): range(0, T, c) + 1
    abar_all = prior.schedule.alphas_cumprod.to(torch.float64)  # the model's alphas_cumprod
    ddim_alphas = [float(abar_all[t]) for t in ddim_timesteps]
    ddim_alphas_prev = [float(abar_all[0]), *ddim_alphas[:-1]]  # make_ddim_sampling_parameters
    g = torch.Generator().manual_seed(seed)

    def draw():  # the project's draws: float32 from the image's generator, then cast
        return torch.randn((1, *prior.sample_shape), generator=g).double()

    def eps_of(z, t):
        eps = prior(z, t).eps
        if pag_scale == 0:
            return eps, eps
        with torch.no_grad(), perturbed_self_attention(prior, [LAYER]):
            eps_perturbed = prior(z, t).eps
        return eps, eps + pag_scale * (eps.detach() - eps_perturbed)

    def p_sample_ddim(x, t, index, guided=True):
        eps, eps_guided = eps_of(x, t)
        e_t = eps_guided if guided else eps
        a_t, a_prev = ddim_alphas[index], ddim_alphas_prev[index]
        pred_x0 = (x - math.sqrt(1 - a_t) * e_t) / math.sqrt(a_t)
        x_prev = math.sqrt(a_prev) * pred_x0 + math.sqrt(1 - a_prev) * e_t  # eta = 0
        c = math.sqrt(1 - a_t) if paper else (1 - a_t)  # the official pseudo_x0: sqrt_one_minus_at ** 2
        pseudo_x0 = (x - c * eps) / math.sqrt(a_t)  # the data term's estimate: the unguided eps
        return x_prev, pseudo_x0

    def mse(a, b):
        return torch.nn.MSELoss()(a, b)

    def pixel_optimization(x_prime):
        opt_var = x_prime.detach().clone().requires_grad_()
        optimizer = torch.optim.AdamW([opt_var], lr=s["pixel_lr"], weight_decay=s["weight_decay"])
        for _ in range(s["pixel_iters"]):
            optimizer.zero_grad()
            loss = mse(y, op(opt_var))
            loss.backward()
            optimizer.step()
            if loss < s["tol"] ** 2:
                break
        return opt_var.detach()

    def latent_optimization(z_init):
        z = z_init.detach().clone().requires_grad_()
        optimizer = torch.optim.AdamW([z], lr=s["latent_lr"], weight_decay=s["weight_decay"])
        losses = []
        for itr in range(s["latent_iters"]):
            optimizer.zero_grad()
            output = mse(y, op(prior.decode(z)))
            output.backward()
            optimizer.step()
            cur = output.item()
            losses.append(cur)
            if itr >= s["latent_patience"]:
                if losses[0] < cur:
                    break
                losses.pop(0)
            if cur < s["tol"] ** 2:
                break
        return z.detach()

    img = draw()  # x_T
    total = S
    index_split = total // 3
    descending = ddim_timesteps[::-1]
    out_steps = []
    for i, step in enumerate(descending):
        index = total - i - 1
        a_t, a_prev = ddim_alphas[index], ddim_alphas_prev[index]
        z = img.detach().requires_grad_(True)
        out, pseudo_x0 = p_sample_ddim(z, step, index)
        norm = torch.linalg.norm(y - op(prior.decode(pseudo_x0)))
        img = (out - torch.autograd.grad(norm, z)[0] * (a_t * ZETA)).detach()  # scale = a_t * .5
        if index <= total - index_split and index > 0 and index % s["resample_every"] == 0:
            x_t = img.clone()
            z_k = img
            for k in range(i, min(i + s["travel_steps"], total - 1)):
                index_ = total - k - 1
                level = index_ if not paper else index_ - 1  # official: abar one level too high
                with torch.no_grad():
                    z_k, pseudo_x0 = p_sample_ddim(z_k, descending[k + 1], level, guided=False)
            sigma = GAMMA * (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
            if index >= index_split:
                with torch.no_grad():
                    x_prime = prior.decode(pseudo_x0)
                opt = pixel_optimization(x_prime)
                with torch.no_grad():
                    z0_y = prior.encode(opt)
            else:
                z0_y = latent_optimization(pseudo_x0)
            noise = draw()
            img = (sigma * math.sqrt(a_prev) * z0_y + (1 - a_prev) * x_t) / (sigma + 1 - a_prev) + noise * math.sqrt(
                1 / (1 / sigma + 1 / (1 - a_prev))
            )
        out_steps.append(img)
    img = latent_optimization(img)
    out_steps[-1] = img
    return torch.cat(out_steps)


@pytest.mark.parametrize(
    ("reference", "pag_scale"),
    [(False, 0.0), (True, 0.0), (False, 1.5)],
    ids=["paper", "official-arithmetic", "pag"],
)
def test_chain_matches_the_official_sampler(prior, problem, reference, pag_scale):
    """Every step's latent equals the official sampler's on each image alone: ours on the batch of two (per-image
    norms and stopping rules: batch invariance), in reference mode (its batch-wide norm) image by image."""
    _, op, y = problem
    pag = PAG(pag_scale, (LAYER,)) if pag_scale else None
    solver = ReSample(prior, op, zeta=ZETA, gamma=GAMMA, pag=pag, progress=False, reference=reference, **SETTINGS)
    phases = [solver.phase(i) for i in range(10)]
    assert phases == [None, None, None, "pixel", None, "pixel", None, "latent", None, None]

    def run(images: slice, seeds: list[int]) -> torch.Tensor:
        steps = []
        callback = lambda info: steps.append(info.x_t)  # noqa: E731
        solver.restore(y[images], generators_from_seeds(seeds), callback=callback, callback_every=1)
        return torch.stack(steps)  # (steps, B, C, H, W)

    ours = torch.cat([run(slice(0, 1), [7]), run(slice(1, 2), [8])], 1) if reference else run(slice(0, 2), [7, 8])
    for b, seed in enumerate((7, 8)):
        expected = official_resample(prior, op, y[b : b + 1], seed, paper=not reference, pag_scale=pag_scale)
        torch.testing.assert_close(ours[:, b], expected, rtol=0, atol=1e-8)


def test_the_loop_settings_stop_pixel_searches_early(prior, problem, monkeypatch):
    """With the loop test's tol, pixel searches end before their iteration limit (so that test checks the rule)."""
    import solvers.resample as module

    _, op, y = problem
    counts, fit = [], module.adamw_fit

    def counting(x0, loss_fn, **kwargs):
        calls = []
        out = fit(x0, lambda v: (calls.append(1), loss_fn(v))[1], **kwargs)
        counts.append((kwargs.get("patience"), len(calls), kwargs["max_iters"]))
        return out

    monkeypatch.setattr(module, "adamw_fit", counting)
    ReSample(prior, op, zeta=ZETA, gamma=GAMMA, progress=False, **SETTINGS).restore(y, generators_from_seeds([7, 8]))
    pixel = [(n, limit) for patience, n, limit in counts if patience is None]
    assert len(pixel) == 2 and all(n < limit for n, limit in pixel)


def official_latent_loop(z_init, target, *, lr, max_iters, tol, patience, weight_decay=0.01):
    """``latent_optimization`` with an identity decoder and operator: MSELoss(target, z), AdamW, its two stops."""
    z = z_init.clone().requires_grad_()
    optimizer = torch.optim.AdamW([z], lr=lr, weight_decay=weight_decay)
    losses, iterations = [], 0
    for itr in range(max_iters):
        iterations += 1
        optimizer.zero_grad()
        output = torch.nn.MSELoss()(target, z)
        output.backward()
        optimizer.step()
        cur = output.item()
        losses.append(cur)
        if itr >= patience:
            if losses[0] < cur:
                break
            losses.pop(0)
        if cur < tol**2:
            break
    return z.detach(), iterations


@pytest.mark.parametrize(("lr", "tol"), [(0.9, 0.0), (0.05, 0.3)], ids=["patience", "tol"])
def test_adamw_fit_stops_each_image_as_the_official_loop(lr, tol):
    """Per image: the official latent loop's result and its stop (a loss above the one ``patience`` iterations
    before: Adam at a large lr oscillates; or a loss below tol^2), with two images that stop at different times."""
    g = torch.Generator().manual_seed(4)
    z0 = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    target = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)
    kwargs = dict(lr=lr, max_iters=60, tol=tol, patience=4)
    got = adamw_fit(z0, lambda z: per_image_mse(target, z), weight_decay=0.01, **kwargs)
    iterations = []
    for b in range(2):
        expected, n = official_latent_loop(z0[b : b + 1], target[b : b + 1], **kwargs)
        torch.testing.assert_close(got[b : b + 1], expected, rtol=0, atol=1e-12)
        iterations.append(n)
    assert min(iterations) < 60 and iterations[0] != iterations[1], iterations


# -- stochastic resampling -------------------------------------------------------------------------------------------
def test_stochastic_resample_is_the_product_of_the_two_gaussians():
    """N(sqrt(abar) z0_y, (1 - abar) I) (the forward process from the consistent z0_y) times N(z', sigma^2 I) (the
    sampler's z' as a noisy observation): precision 1 / (1 - abar) + 1 / sigma^2, mean by precision weights. The mean
    exactly (noise 0, and linearity in the noise); the variance by Monte Carlo."""
    g = torch.Generator().manual_seed(0)
    z0_y, z_prime = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
    abar, sigma2 = 0.37, 0.8
    precision = 1 / (1 - abar) + 1 / sigma2
    mean = (math.sqrt(abar) * z0_y / (1 - abar) + z_prime / sigma2) / precision
    got_mean = stochastic_resample(z0_y, z_prime, abar, sigma2, torch.zeros_like(z0_y))
    torch.testing.assert_close(got_mean, mean, rtol=0, atol=1e-14)
    noise = torch.randn(200_000, generator=g, dtype=torch.float64)
    draws = stochastic_resample(torch.full_like(noise, 0.3), torch.full_like(noise, -0.2), abar, sigma2, noise)
    expected_mean = (math.sqrt(abar) * 0.3 / (1 - abar) - 0.2 / sigma2) / precision
    assert abs(draws.mean().item() - expected_mean) < 4 * math.sqrt(1 / precision / noise.numel())
    assert abs(draws.var().item() / (1 / precision) - 1) < 0.01  # std of the ratio ~ sqrt(2 / n) = 0.003


def test_resampling_variance_schedule(prior, problem):
    """sigma_t^2 = gamma (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev): gamma times DDPM's posterior
    variance between the two levels (the official schedule, gamma 40)."""
    _, op, _ = problem
    solver = ReSample(prior, op, zeta=ZETA, gamma=GAMMA, progress=False, **SETTINGS)
    abar = prior.schedule.alphas_cumprod
    assert solver.timesteps == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]  # LDM's uniform DDIM steps
    i = 3  # timesteps 601 -> 501
    a, a_prev = float(abar[601]), float(abar[501])
    assert solver.timesteps[i] == 601
    assert solver.sigma2(i) == pytest.approx(GAMMA * (1 - a_prev) / (1 - a) * (1 - a / a_prev), rel=1e-12)


# -- hard data consistency -------------------------------------------------------------------------------------------
def test_pixel_optimisation_converges_to_the_inpainting_least_squares_point(problem):
    """For inpainting (A = a mask), argmin ||y - A x||^2 from x0 by Adam keeps the hidden pixels at x0 (their
    gradient is zero) and takes the observed ones to y: x = x0 - A^+ (A x0 - y) = M y + (1 - M) x0."""
    x, _, _ = problem
    masks = generators_from_seeds([0, 1])
    op = make_operator("box_inpaint", image_size=32, hole=12, margin=2, generator=masks).double()
    y = op.measure(x, generators_from_seeds([5, 6]))
    x0 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 2 - 1
    M = op(torch.ones_like(x))  # the observed pixels: 1, hidden: 0
    assert set(M.unique().tolist()) == {0.0, 1.0}
    closed = M * y + (1 - M) * x0
    got = adamw_fit(x0, lambda v: per_image_mse(y, op(v)), lr=1e-2, max_iters=2000, tol=0.0, weight_decay=0.0)
    assert (M * (op(got) - y)).abs().max() < 2e-3  # y's noise in the hole stays: A x is 0 there
    torch.testing.assert_close(got, closed, rtol=0, atol=2e-3)
    assert torch.equal(got * (1 - M), x0 * (1 - M))


def test_hard_data_consistency_reduces_the_residual(prior, problem):
    """The pixel search lowers ||y - A(x)|| from D(z0_hat), the latent one ||y - A(D(z))|| from z0_hat (the
    random VAE's E then D is far from the identity, so the pixel phase is checked before its encoding)."""
    _, op, y = problem
    solver = ReSample(prior, op, zeta=ZETA, gamma=GAMMA, progress=False, pixel_iters=100, latent_iters=50)
    z0 = torch.randn(2, *prior.sample_shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        x0 = prior.decode(z0)
        before = (y - op(x0)).flatten(1).norm(dim=1)
        searched = (y - op(solver.pixel_search(x0, y))).flatten(1).norm(dim=1)
        latent = (y - op(prior.decode(solver.latent_optimisation(z0, y)))).flatten(1).norm(dim=1)
    for after in (searched, latent):
        assert (after < 0.9 * before).all(), (before, after)


# -- PAG, refusals ----------------------------------------------------------------------------------------------------
def test_pag_scale_zero_is_no_pag_bit_for_bit(prior, problem):
    _, op, y = problem
    kwargs = dict(zeta=ZETA, gamma=GAMMA, progress=False, **SETTINGS)
    plain = ReSample(prior, op, **kwargs).restore(y, generators_from_seeds([1, 2]))
    zero = ReSample(prior, op, pag=PAG(0.0, (LAYER,)), **kwargs).restore(y, generators_from_seeds([1, 2]))
    assert torch.equal(plain, zero)
    guided = ReSample(prior, op, pag=PAG(1.5, (LAYER,)), **kwargs).restore(y, generators_from_seeds([1, 2]))
    assert (guided - plain).abs().max() > 1e-6


def test_x0_from_guided_feeds_the_guided_prediction_to_the_data_part(prior, problem):
    """The ablation changes the data part (the latent-DPS gradient and the anchor), the paper's rule does not."""
    _, op, y = problem
    kwargs = dict(zeta=ZETA, gamma=GAMMA, progress=False, **SETTINGS)
    unguided = ReSample(prior, op, pag=PAG(1.5, (LAYER,)), **kwargs).restore(y, generators_from_seeds([1, 2]))
    guided = ReSample(prior, op, pag=PAG(1.5, (LAYER,), x0_from="guided"), **kwargs).restore(
        y, generators_from_seeds([1, 2])
    )
    assert (guided - unguided).abs().max() > 1e-6


def test_bare_step_is_a_step_that_does_not_resample(problem):
    """The benchmark's bare step (raw UNet / VAE) equals the solver's step where it does not resample; the tiny SD
    prior in float32 (its VAE has no shift factor and no autocast), so float32 rounding."""
    from priors.sd import random_sd_prior
    from solvers import NoisePredictor, StepContext
    from solvers.bare import resample_bare_step

    prior = random_sd_prior(seed=0, image_size=32)
    _, op, y = problem
    op, y = op.float(), y.float()
    solver = ReSample(prior, op, zeta=ZETA, gamma=GAMMA, progress=False, **SETTINGS)
    z_t = torch.randn(2, *prior.sample_shape, generator=torch.Generator().manual_seed(5))
    i = 2
    assert solver.phase(i) is None
    ours, _ = solver.step(StepContext(NoisePredictor(prior), y, generators_from_seeds([0, 1])), i, z_t)
    bare = resample_bare_step(solver, z_t, y, torch.zeros_like(z_t), i)
    torch.testing.assert_close(bare, ours, rtol=1e-4, atol=1e-5)


def test_refuses_a_pixel_prior():
    from priors.adm import ADMPrior

    pixel = ADMPrior.from_preset("test", init="random", generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="latent priors"):
        ReSample(pixel, None)
