"""PSLD (+ PAG, + CFG) on tiny SD-shaped models: the step is the formula, gradients reach z_t through the
decoder and the encoder, the reference quirks are opt-in."""

import pytest
import torch

from operators import make_operator
from operators.random import generators_from_seeds
from priors import perturbed_self_attention
from solvers import PAG, PSLD, NoisePredictor, StepContext, sample

LAYER = "input_blocks.8.1.transformer_blocks.0.attn1"


@pytest.fixture(scope="module")
def prior():
    from priors.sd import random_sd_prior

    return random_sd_prior(seed=0, image_size=32)


@pytest.fixture(scope="module")
def problem():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    op = make_operator("gaussian_blur", kernel_size=9, sigma=1.0)
    return op, op.measure(x, generators_from_seeds([3, 4]))


def test_psld_step_by_hand(prior, problem):
    op, y = problem
    omega, gamma, s = 0.7, 0.2, 1.5
    solver = PSLD(prior, op, omega=omega, gamma=gamma, num_steps=10, pag=PAG(s, (LAYER,)), progress=False)
    sched, i = solver.schedule, 4
    t = int(sched.timesteps[i])
    z_t = torch.randn(2, *prior.sample_shape, generator=torch.Generator().manual_seed(5))

    z = z_t.clone().requires_grad_(True)
    eps = prior(z, t).eps
    with torch.no_grad(), perturbed_self_attention(prior, [LAYER]):
        eps_perturbed = prior(z_t, t).eps
    abar, abar_prev = sched.alphas_cumprod[i].item(), sched.alphas_cumprod_prev[i].item()
    z0_hat = (z - (1 - abar) ** 0.5 * eps) / abar**0.5
    eps_guided = eps.detach() + s * (eps.detach() - eps_perturbed)
    z0_guided = (z_t - (1 - abar) ** 0.5 * eps_guided) / abar**0.5
    z_prime = abar_prev**0.5 * z0_guided + (1 - abar_prev) ** 0.5 * eps_guided  # DDIM, eta = 0
    x0 = prior.decode(z0_hat)
    meas = torch.stack([(y[b] - op(x0)[b]).norm() for b in range(2)])
    glued = y + x0 - op(x0)  # A^T = the operator's transpose: identity for blur (DPS / PSLD)
    glue = torch.stack([(prior.encode(glued)[b] - z0_hat[b]).norm() for b in range(2)])
    expected = z_prime - torch.autograd.grad((omega * meas + gamma * glue).sum(), z)[0]

    got, got_z0 = solver.step(StepContext(NoisePredictor(prior, solver.pag), y, generators_from_seeds([0, 1])), i, z_t)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_z0, z0_hat.detach(), rtol=0, atol=1e-5)


def test_gradient_reaches_z_t_through_decoder_and_encoder(prior, problem):
    """The data gradient is finite and non-zero, and cutting the graph at the decoder (both terms) or at the
    encoder (gluing term) changes it: the gradient does flow through D and through E."""
    op, y = problem
    z_t = torch.randn(2, *prior.sample_shape, generator=torch.Generator().manual_seed(6))
    solver = PSLD(prior, op, omega=1.0, gamma=1.0, num_steps=10, progress=False)

    def grad(cut: str = "") -> torch.Tensor:
        z = z_t.clone().requires_grad_(True)
        z0_hat = solver.schedule.predict_x0(3, z, prior(z, int(solver.schedule.timesteps[3])).eps)
        original = getattr(prior, cut) if cut else None
        if cut:  # instance attribute shadows the method: that stage's output leaves the graph
            setattr(prior, cut, lambda *a, **k: original(*a, **k).detach())
        try:
            loss = solver.data_loss(z0_hat, y, generators_from_seeds([0, 1])).sum()
        finally:
            if cut:
                delattr(prior, cut)
        return torch.autograd.grad(loss, z)[0]

    full = grad()
    assert torch.isfinite(full).all() and full.abs().sum() > 0
    for cut in ("decode", "encode"):
        assert (full - grad(cut)).abs().max() > 1e-4 * full.abs().max(), cut


def test_quirks_are_opt_in(prior, problem):
    op, y = problem
    z_t = torch.randn(2, *prior.sample_shape, generator=torch.Generator().manual_seed(7))
    z0 = z_t * 0.5
    plain = PSLD(prior, op, num_steps=10, progress=False)
    quirky = PSLD(prior, op, num_steps=10, noisy_measurement_loss=True, stochastic_encoder=True, progress=False)
    gens = generators_from_seeds([0, 1])
    with torch.no_grad():
        a = plain.data_loss(z0, y, gens)
        b = plain.data_loss(z0, y, generators_from_seeds([0, 1]))
        c = quirky.data_loss(z0, y, generators_from_seeds([0, 1]))
        d = quirky.data_loss(z0, y, generators_from_seeds([2, 3]))
    assert torch.equal(a, b)  # deterministic by default: posterior mean, no noise in the loss
    assert not torch.allclose(c, a) and not torch.allclose(c, d)  # quirks draw from the given generators


def test_cfg_and_pag_formula(prior):
    """With a prompt: eps_u + w (eps_c - eps_u) + s (eps_c - eps_c_perturbed); CFG only with a prompt."""
    z_t = torch.randn(1, *prior.sample_shape, generator=torch.Generator().manual_seed(8))
    t, w, s = 500, 4.0, 2.0
    cond, uncond = prior.prompt_embedding("a red circle"), prior.prompt_embedding("")
    with torch.no_grad():
        eps_c, eps_u = prior(z_t, t, cond).eps, prior(z_t, t, uncond).eps
        with perturbed_self_attention(prior, [LAYER]):
            eps_cp = prior(z_t, t, cond).eps
    pred = NoisePredictor(prior, PAG(s, (LAYER,)), cond=cond, uncond=uncond, cfg_scale=w)(z_t, t)
    torch.testing.assert_close(pred.eps, eps_u + w * (eps_c - eps_u), rtol=0, atol=1e-5)
    torch.testing.assert_close(pred.eps_guided, eps_u + w * (eps_c - eps_u) + s * (eps_c - eps_cp), rtol=0, atol=1e-5)
    assert PSLD(prior, None, prompt="", progress=False).cond is None  # empty prompt: no CFG pass at all
    assert PSLD(prior, None, prompt="", empty_prompt_cfg=True, progress=False).cfg_scale == 7.5  # the quirk


def test_unconditional_latent_sampling_with_and_without_pag(prior):
    plain = sample(prior, 2, generators_from_seeds([0, 1]), num_steps=5, progress=False)
    guided = sample(prior, 2, generators_from_seeds([0, 1]), num_steps=5, pag=PAG(3.0, (LAYER,)), progress=False)
    assert plain.shape == guided.shape == (2, 3, 32, 32)
    assert plain.abs().max() <= 1 and not torch.equal(plain, guided)


def test_psld_refuses_pixel_priors_and_dps_refuses_latent(prior):
    from priors.adm import ADMPrior
    from solvers import DPS

    with pytest.raises(ValueError, match="latent priors"):
        PSLD(ADMPrior.from_preset("test"), None)
    with pytest.raises(ValueError, match="pixel-space priors"):
        DPS(prior, None)
