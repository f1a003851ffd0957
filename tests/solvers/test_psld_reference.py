"""PSLD's reproduction switch (``reference=True``) on a tiny SD-shaped prior: the UNet's timesteps of LDM's DDIM
sampler, and PSLD_PAG's data term from the conditional eps with CFG + PAG, each checked by hand."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from operators import make_operator
from operators.random import generators_from_seeds
from priors import perturbed_self_attention
from solvers import PAG, PSLD, NoisePredictor, StepContext

LAYER = "input_blocks.8.1.transformer_blocks.0.attn1"


@pytest.fixture(scope="module")
def prior():
    from priors.sd import random_sd_prior

    return random_sd_prior(seed=0, image_size=32)


def ldm_unet_timesteps(num_steps: int, T: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """What LDM's DDIM sampler (Min-Jaewon/PSLD_PAG stable-diffusion/ldm/modules/diffusionmodules/util.py
    ``make_ddim_timesteps`` / ``make_ddim_sampling_parameters``, psld.py ``ddim_sampling``) gives the UNet and where
    it reads abar, noisiest first: t = range(0, T, T // n) + 1; abar index t - 1 when t[-1] == n, else t."""
    t = np.arange(0, T, T // num_steps) + 1
    abar_index = t - 1 if t[-1] == len(t) else t
    return t[::-1], abar_index[::-1]


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("num_steps", [1000, 250])
def test_unet_timesteps(prior, monkeypatch, num_steps, reference):
    """Every UNet call's timestep, captured with a hook (the network's forward is stubbed: 1000 steps in a second)."""
    seen = []
    network = prior.network
    monkeypatch.setattr(network, "forward", lambda x, t, **kw: SimpleNamespace(sample=torch.zeros_like(x)))
    handle = network.register_forward_hook(lambda module, args, out: seen.append(args[1].tolist()))
    try:
        solver = PSLD(prior, None, num_steps=num_steps, reference=reference, progress=False)
        with torch.no_grad():
            z = torch.zeros(1, *prior.sample_shape)
            predict = NoisePredictor(prior, None)
            for i in range(num_steps):
                solver.step(StepContext(predict), i, z)
    finally:
        handle.remove()
    unet_t, abar_index = ldm_unet_timesteps(num_steps)
    abar = prior.schedule.alphas_cumprod.double().numpy()
    np.testing.assert_allclose(solver.schedule.alphas_cumprod.double().numpy(), abar[abar_index], rtol=1e-6)
    seen = np.array([t[0] for t in seen])
    if reference or num_steps != 1000:
        np.testing.assert_array_equal(seen, unet_t)  # index + 1 at 1000 steps: 1000, 999, ..., 1
    else:
        np.testing.assert_array_equal(seen, abar_index)  # ours: the timestep whose abar the step uses
    if num_steps == 1000:
        assert seen[0] == (1000 if reference else 999) and seen[-1] == (1 if reference else 0)


def test_cfg_pag_data_term_uses_the_conditional_eps(prior):
    """PSLD_PAG psld.py: with CFG or PAG on, pred_z_0_opt = (z_t - sqrt(1 - a_t) e_t_cond) / sqrt(a_t) for the
    data term, while the DDIM step uses the CFG + PAG combination; loss = omega ||y - noiser(A(D(z0)))|| +
    gamma ||E_sample(A^T y + x0 - A^T A x0) - z0|| (norms over the batch)."""
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    op = make_operator("gaussian_blur", kernel_size=9, sigma=1.0)
    y = op.measure(x, generators_from_seeds([3]))
    omega, gamma, s, w, i = 0.7, 0.2, 2.0, 3.0, 4
    solver = PSLD(
        prior, op, omega=omega, gamma=gamma, num_steps=10, pag=PAG(s, (LAYER,)), prompt="a red circle",
        cfg_scale=w, reference=True, progress=False,
    )  # fmt: skip
    sched = solver.schedule
    t = int(sched.timesteps[i])
    z_t = torch.randn(1, *prior.sample_shape, generator=torch.Generator().manual_seed(5))

    z = z_t.clone().requires_grad_(True)
    cond, uncond = prior.prompt_embedding("a red circle"), prior.prompt_embedding("")
    eps_c, eps_u = prior(z, t, cond).eps, prior(z_t, t, uncond).eps.detach()
    with torch.no_grad(), perturbed_self_attention(prior, [LAYER]):
        eps_cp = prior(z_t, t, cond).eps
    eps_guided = eps_u + w * (eps_c.detach() - eps_u) + s * (eps_c.detach() - eps_cp)
    abar, abar_prev = sched.alphas_cumprod[i].item(), sched.alphas_cumprod_prev[i].item()
    z0_cond = (z - (1 - abar) ** 0.5 * eps_c) / abar**0.5
    z0_guided = (z_t - (1 - abar) ** 0.5 * eps_guided) / abar**0.5
    z_prime = abar_prev**0.5 * z0_guided + (1 - abar_prev) ** 0.5 * eps_guided
    gens = generators_from_seeds([7])
    x0 = prior.decode(z0_cond)
    y_hat = op(x0) + 0.05 * torch.randn(y.shape, generator=gens[0])  # the loss's fresh measurement noise
    glued = y + x0 - op(x0)  # A^T: the operator's transpose, the identity for blur (DPS / PSLD)
    z_glued = prior.encode(glued, sample=True, generator=gens)  # then the encoder's posterior sample
    loss = omega * (y - y_hat).norm() + gamma * (z_glued - z0_cond).norm()
    expected = z_prime - torch.autograd.grad(loss, z)[0]

    got, got_z0 = solver.step(StepContext(solver_predictor(solver), y, generators_from_seeds([7])), i, z_t)
    torch.testing.assert_close(got_z0, z0_cond.detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    z0_combined = (z_t - (1 - abar) ** 0.5 * (eps_u + w * (eps_c.detach() - eps_u))) / abar**0.5
    assert (got_z0 - z0_combined).abs().max() > 1e-3  # the default (CFG-combined eps) would fail the check


def solver_predictor(solver: PSLD) -> NoisePredictor:
    return NoisePredictor(solver.prior, solver.pag, cond=solver.cond, uncond=solver.uncond, cfg_scale=solver.cfg_scale)


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_reference_switch_turns_the_quirks_on(prior):
    on, off = PSLD(prior, None, reference=True), PSLD(prior, None)
    assert on.noisy_measurement_loss and on.stochastic_encoder and on.unet_t_shift == 1
    assert not (off.noisy_measurement_loss or off.stochastic_encoder or off.unet_t_shift)
    assert isinstance(on.precision(torch.device("cuda")), torch.autocast)  # PSLD_PAG's --precision autocast
