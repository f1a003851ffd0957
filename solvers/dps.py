"""DPS: Diffusion Posterior Sampling (Chung et al., ICLR 2023) over a pixel-space prior, with optional PAG.

Per step, with x_t requiring grad (Chung et al. 2023, Algorithm 1; DPS2022/diffusion-posterior-sampling
``guided_diffusion/condition_methods.py``, ``PosteriorSampling``):
    eps, v          = prior(x_t, t)                                   (+ eps_perturbed for PAG)
    x0_hat          = sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps,   clamped to [-1, 1]
    x'_{t-1}        = DDPM ancestral step from (x_t, x0 of eps_guided, learned variance)
    x_{t-1}         = x'_{t-1} - zeta * grad_{x_t} || y - A(x0_hat) ||_2        (per sample, not squared)

``reference=True`` reproduces DPS's ``PosteriorSampling`` (DPS2022/diffusion-posterior-sampling,
guided_diffusion/condition_methods.py): one norm over the whole batch (images coupled; equal to ours for a batch
of one). Everything else already matches it; its other quirks (unseeded motion kernels, min-max normalised
saved images) are defects, not behaviours, and stay fixed.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field

import torch
from torch import Tensor

from operators import Operator
from priors import Prior, VPDenoiser

from .chain import ChainSolver, StepContext
from .common import batch_norm, residual_norm
from .guidance import PAG


@dataclass(eq=False)
class DPS(ChainSolver):
    """DPS posterior sampler. ``operator=None`` gives plain ancestral (DDPM) sampling of the prior.

    Args:
        prior: a pixel-space prior (``prior(x_t, t) -> ModelOutput``).
        operator: the measurement operator A (None: unconditional sampling).
        zeta: step size of the data-consistency gradient.
        num_steps: DDPM steps (1000 = the full chain; fewer = guided-diffusion's even respacing).
        pag: Perturbed-Attention Guidance, or None.
        clip_x0: clamp x0_hat to [-1, 1] (DPS does; the gradient flows through the clamp).
        cond: class labels for class-conditional ADMs.
        progress: show a tqdm bar over the steps.
        reference: DPS's own data term (one norm over the batch); see the module docstring.
    """

    prior: Prior = field(repr=False)
    operator: Operator | None = field(default=None, repr=False)
    zeta: float = 1.0
    _: KW_ONLY
    num_steps: int = 1000
    pag: PAG | None = None
    clip_x0: bool = True
    cond: object | None = field(default=None, repr=False)
    progress: bool = True
    reference: bool = False

    def __post_init__(self) -> None:
        if self.prior.is_latent:
            raise ValueError("DPS runs on pixel-space priors; use PSLD for latent priors")
        self.zeta = float(self.zeta)
        self.schedule = self.prior.schedule.sampling(self.prior.schedule.timesteps(self.num_steps, spacing="even"))
        self.timesteps = self.schedule.timesteps.tolist()
        self.denoiser = VPDenoiser(self.schedule, clip_x0=self.clip_x0)

    def step(self, ctx: StepContext, i: int, x_t: Tensor) -> tuple[Tensor, Tensor]:
        """One DPS step: returns (x_{t-1}, x0_hat), both detached.

        The guided prediction drives the ancestral step; the data-consistency gradient sees x0_hat of the
        unguided one (``pag.x0_from="guided"``: of the guided one)."""
        y, x0_of = ctx.y, self.denoiser.x0
        data_term = y is not None and self.operator is not None
        with torch.set_grad_enabled(data_term):
            x_t = x_t.detach().requires_grad_(data_term)
            pred = ctx.predict(x_t, self.timesteps[i])
            x0_hat = x0_of(i, x_t, pred.eps_data)  # unguided (paper): the data term's estimate
            # without guidance at this step eps_guided is eps_data's value (the contract): no second estimate
            x0_step = x0_of(i, x_t, pred.eps_guided) if pred.guided else x0_hat
            var_values = pred.var_values.detach() if pred.var_values is not None else None
            log_var = self.schedule.log_variance(i, x_t, self.prior.variance, var_values)
            x_prev = self.schedule.ddpm_step(i, x0_step.detach(), x_t.detach(), ctx.noise, log_var)
            if data_term:
                y_hat = self.operator(x0_hat)
                loss = batch_norm(y, y_hat) if self.reference else residual_norm(y, y_hat).sum()
                grad = torch.autograd.grad(loss, x_t)[0]
                x_prev = x_prev - self.zeta * grad
        return x_prev.detach(), x0_hat.detach()
