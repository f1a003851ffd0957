"""Solver steps written straight from the papers' equations against the raw network, with none of the chain's
machinery (no ``NoisePredictor``, no PAG, no callbacks): the baselines the benchmark (``runner.measure``) times a
registered solver's step against, to show what the machinery costs. Each is declared as its solver's
``SolverSpec.bare_step``; a solver without one is benchmarked without a baseline.

A bare step is ``bare_step(solver, x_t, y, noise, i) -> x_prev``: step ``i`` of ``solver.schedule`` from ``x_t``
with the measurement ``y``, for the solver's prior, operator and step sizes.
"""

from __future__ import annotations

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
