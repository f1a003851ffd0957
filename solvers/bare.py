"""Solver steps written straight from the papers' equations against the raw network, with none of the chain's
machinery (no ``NoisePredictor``, no PAG, no callbacks): the baselines the benchmark (``runner.measure``) times a
registered solver's step against, to show what the machinery costs. Each is declared as its solver's
``SolverSpec.bare_step``; a solver without one is benchmarked without a baseline.

A bare step is ``bare_step(solver, x_t, y, noise, i) -> x_prev``: step ``i`` of ``solver.schedule`` from ``x_t``
with the measurement ``y``, for the solver's prior, operator and step sizes.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import Tensor


class BareStep(Protocol):
    def __call__(self, solver: Any, x_t: Tensor, y: Tensor, noise: Tensor, i: int) -> Tensor: ...


def dps_bare_step(solver: Any, x_t: Tensor, y: Tensor, noise: Tensor, i: int) -> Tensor:
    """DPS (Chung et al. 2023, Algorithm 1): DDPM step with the learned variance, minus
    zeta * grad_{x_t} ||y - A(x0_hat)|| with zeta = 1 (the cost does not depend on it)."""
    sched, net, op = solver.schedule, solver.prior.network, solver.operator
    t = sched.timesteps[i].to(x_t.device).expand(x_t.shape[0])
    x_t = x_t.detach().requires_grad_(True)
    eps, v = net(x_t, t).chunk(2, dim=1)
    x0_hat = sched.predict_x0(i, x_t, eps).clamp(-1, 1)
    log_var = sched.log_variance(i, x_t, "learned_range", v.detach())
    x_prev = sched.ddpm_step(i, x0_hat.detach(), x_t.detach(), noise, log_var)
    loss = (y - op(x0_hat)).flatten(1).norm(dim=1).sum()
    return x_prev - torch.autograd.grad(loss, x_t)[0]


def psld_bare_step(solver: Any, x_t: Tensor, y: Tensor, noise: Tensor, i: int) -> Tensor:
    """PSLD (Rout et al. 2023): DDIM step (eta = 0: ``noise`` unused) minus grad_{z_t} of
    omega ||y - A(D(z0_hat))|| + gamma ||E(A^T y + x0 - A^T A x0) - z0_hat||, against the raw UNet / VAE."""
    sched, prior, op = solver.schedule, solver.prior, solver.operator
    t = torch.full((x_t.shape[0],), int(sched.timesteps[i]), device=x_t.device)
    z_t = x_t.detach().requires_grad_(True)
    eps = prior.unet(z_t, t, encoder_hidden_states=prior.null_embedding).sample
    z0_hat = sched.predict_x0(i, z_t, eps)
    z_prev = sched.ddim_step(i, z0_hat.detach(), eps.detach())
    x0 = prior.vae.decode(z0_hat / prior.scaling_factor).sample
    meas = (y - op(x0)).flatten(1).norm(dim=1)
    glued = op.transpose(y) + x0 - op.transpose(op(x0))
    glue = (prior.vae.encode(glued).latent_dist.mean * prior.scaling_factor - z0_hat).flatten(1).norm(dim=1)
    loss = (solver.omega * meas + solver.gamma * glue).sum()
    return z_prev - torch.autograd.grad(loss, z_t)[0]


def _eps(solver: Any, x_t: Tensor, i: int) -> Tensor:
    """The raw network's noise prediction at step ``i`` (the first 3 channels: ADMs with a learned variance output
    6, the last 3 being its interpolation values)."""
    t = solver.schedule.timesteps[i].to(x_t.device).expand(x_t.shape[0])
    return solver.prior.network(x_t, t)[:, :3]


def ddnm_bare_step(solver: Any, x_t: Tensor, y: Tensor, noise: Tensor, i: int) -> Tensor:
    """DDNM+ (Wang et al. 2023, eqs. 12, 17, 19 and the DDIM-like step 51, no time-travel): x0_hat from eps, the
    range-null-space correction x0_y = x0_hat - lambda_t A^+ (A x0_hat - y), and x_t' = sqrt(abar_t') x0_y +
    gamma_t (eta z + sqrt(1 - eta^2) eps), lambda_t, gamma_t from the noise level (sigma_y = 0: 1 and sigma_t)."""
    sched, op, eta = solver.schedule, solver.operator, solver.eta
    with torch.no_grad():
        eps = _eps(solver, x_t, i)
        x0_hat = sched.predict_x0(i, x_t, eps)
        abar_next = float(sched.alphas_cumprod_prev[i])
        sigma_t, a_t = math.sqrt(1 - abar_next), math.sqrt(abar_next)
        lambda_t, gamma_t = 1.0, math.sqrt(max(sigma_t**2 - (a_t * solver.sigma_y) ** 2, 0.0))
        if sigma_t < a_t * solver.sigma_y:
            lambda_t, gamma_t = sigma_t / (a_t * solver.sigma_y), 0.0
        x0_y = x0_hat - lambda_t * op.pinv(op(x0_hat) - y)
        return a_t * x0_y + gamma_t * (eta * noise + math.sqrt(1 - eta**2) * eps)


def pigdm_bare_step(solver: Any, x_t: Tensor, y: Tensor, noise: Tensor, i: int) -> Tensor:
    """PiGDM (Song et al. 2023, eqs. 7-8; NVlabs/RED-diff ``algos/pgdm.py``): g = (d x0_hat / d x_t)^T v with
    v = r_t^2 A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat) (sigma_y = 0: A^+ y - A^+ A x0_hat), then the DDIM
    step x_s = sqrt(abar_s) x0_hat + c1 z + c2 eps + w sqrt(abar_s abar_t) g."""
    sched, op = solver.schedule, solver.operator
    abar_t, abar_s = float(sched.alphas_cumprod[i]), float(sched.alphas_cumprod_prev[i])
    x_t = x_t.detach().requires_grad_(True)
    eps = _eps(solver, x_t, i)
    x0_hat = sched.predict_x0(i, x_t, eps)
    with torch.no_grad():
        if solver.sigma_y == 0:
            v = op.pinv(y) - op.pinv(op(x0_hat))
        else:
            r2 = 1 - abar_t
            v = r2 * op.adjoint(op.solve_gram(y - op(x0_hat), r2, solver.sigma_y**2))
    g = torch.autograd.grad((v * x0_hat).sum(), x_t)[0]
    c1 = solver.eta * math.sqrt((1 - abar_t / abar_s) * (1 - abar_s) / (1 - abar_t))
    c2 = math.sqrt(1 - abar_s - c1**2)
    x_s = math.sqrt(abar_s) * x0_hat + c1 * noise + c2 * eps + solver.weight * math.sqrt(abar_s * abar_t) * g
    return x_s.detach()


def reddiff_bare_step(solver: Any, mu: Tensor, y: Tensor, noise: Tensor, i: int) -> Tensor:
    """RED-diff (Mardani et al. 2024, Algorithm 1; NVlabs/RED-diff ``algos/reddiff.py``), sigma_x0 = 0: x_t =
    sqrt(abar_t) mu + sqrt(1 - abar_t) eps, the gradient in mu of v ||y - A mu||^2 / 2 + w_t <sg(eps_theta(x_t) - eps),
    mu> (means per image), and one Adam step (a first one: fresh moments) on mu."""
    sched, op = solver.schedule, solver.operator
    abar = float(sched.alphas_cumprod[i])
    with torch.no_grad():
        eps_pred = _eps(solver, math.sqrt(abar) * mu + math.sqrt(1 - abar) * noise, i)
    w_t = solver.lam * math.sqrt(1 - abar) / math.sqrt(abar)  # the default "linear" weight of snr_inv
    mu = mu.detach().requires_grad_(True)
    loss_obs = (y - op(mu)).pow(2).flatten(1).mean(dim=1) / 2
    loss_noise = ((eps_pred - noise) * mu).flatten(1).mean(dim=1)
    grad = torch.autograd.grad((solver.obs_weight * loss_obs + w_t * loss_noise).sum(), mu)[0]
    b1, b2, adam_eps = 0.9, 0.99, 1e-8  # torch.optim.Adam's first step: m_hat = grad, v_hat = grad^2
    m, v = (1 - b1) * grad, (1 - b2) * grad * grad
    return (mu - solver.lr * (m / (1 - b1)) / ((v / (1 - b2)).sqrt() + adam_eps)).detach()


def resample_bare_step(solver: Any, x_t: Tensor, y: Tensor, noise: Tensor, i: int) -> Tensor:
    """ReSample (Song et al. 2024) at a step that does not resample: DDIM step (eta = 0: ``noise`` unused) minus
    zeta abar_t grad_{z_t} ||y - A(D(z0_hat))||, against the raw UNet / VAE (the resampling steps' cost is their
    optimisers', not the network pass PAG adds)."""
    sched, prior, op = solver.schedule, solver.prior, solver.operator
    t = torch.full((x_t.shape[0],), int(sched.timesteps[i]), device=x_t.device)
    z_t = x_t.detach().requires_grad_(True)
    eps = prior.unet(z_t, t, encoder_hidden_states=prior.condition(None, z_t.shape[0])).sample  # empty prompt
    z0_hat = sched.predict_x0(i, z_t, eps)
    z_prev = sched.ddim_step(i, z0_hat.detach(), eps.detach())
    x0 = prior.vae.decode(z0_hat / prior.scaling_factor).sample
    loss = (y - op(x0)).flatten(1).norm(dim=1).sum()
    return z_prev - solver.zeta * float(sched.alphas_cumprod[i]) * torch.autograd.grad(loss, z_t)[0]
