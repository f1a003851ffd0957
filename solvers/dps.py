"""DPS: Diffusion Posterior Sampling (Chung et al., ICLR 2023) over a pixel-space prior, with optional PAG.

Per step, with x_t requiring grad (DPS paper Algorithm 1; DPS2022/diffusion-posterior-sampling):
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

import torch
from torch import Tensor

from operators import Operator
from operators.random import Generators
from priors import Prior

from .common import StepCallback, batch_norm, initial_noise, residual_norm, run_chain
from .guidance import PAG, NoisePredictor


class DPS:
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

    def __init__(
        self,
        prior: Prior,
        operator: Operator | None = None,
        zeta: float = 1.0,
        *,
        num_steps: int = 1000,
        pag: PAG | None = None,
        clip_x0: bool = True,
        cond: object | None = None,
        progress: bool = True,
        reference: bool = False,
    ):
        if prior.is_latent:
            raise ValueError("DPS runs on pixel-space priors; use PSLD for latent priors")
        self.prior = prior
        self.operator = operator
        self.zeta = float(zeta)
        self.pag = pag
        self.clip_x0 = clip_x0
        self.cond = cond
        self.progress = progress
        self.reference = reference
        self.schedule = prior.schedule.sampling(prior.schedule.timesteps(num_steps, spacing="even"))

    def tweedie(self, i: int, x_t: Tensor, eps: Tensor) -> Tensor:
        x0 = self.schedule.predict_x0(i, x_t, eps)
        return x0.clamp(-1, 1) if self.clip_x0 else x0

    def step(
        self,
        predict: NoisePredictor,
        i: int,
        x_t: Tensor,
        y: Tensor | None,
        noise: Tensor | None,
        generators: list[torch.Generator] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One DPS step: returns (x_{t-1}, x0_hat), both detached. ``generators`` is unused (DPS draws only the
        step's ``noise``); it is there so every solver's step has the same signature.

        The guided prediction drives the ancestral step; the data-consistency gradient sees x0_hat of the
        unguided one (``pag.x0_from="guided"``: of the guided one)."""
        t = int(self.schedule.timesteps[i])
        data_term = y is not None and self.operator is not None
        with torch.set_grad_enabled(data_term):
            x_t = x_t.detach().requires_grad_(data_term)
            pred = predict(x_t, t)
            x0_hat = self.tweedie(i, x_t, pred.eps_data)  # unguided (paper): the data term's estimate
            # without guidance at this step eps_guided is eps_data's value (the contract): no second estimate
            x0_step = self.tweedie(i, x_t, pred.eps_guided) if pred.guided else x0_hat
            var_values = pred.var_values.detach() if pred.var_values is not None else None
            log_var = self.schedule.log_variance(i, x_t, self.prior.variance, var_values)
            x_prev = self.schedule.ddpm_step(i, x0_step.detach(), x_t.detach(), noise, log_var)
            if data_term:
                y_hat = self.operator(x0_hat)
                loss = batch_norm(y, y_hat) if self.reference else residual_norm(y, y_hat).sum()
                grad = torch.autograd.grad(loss, x_t)[0]
                x_prev = x_prev - self.zeta * grad
        return x_prev.detach(), x0_hat.detach()

    def restore(
        self,
        y: Tensor | None,
        generator: Generators,
        *,
        batch_size: int | None = None,
        x_T: Tensor | None = None,
        callback: StepCallback | None = None,
        callback_every: int = 0,
    ) -> Tensor:
        """Sample x_0 ~ p(x_0 | y) (or p(x_0) when ``y``/``operator`` is None), clamped to [-1, 1].

        ``generator``: one torch.Generator per image (batch-size invariant) or one shared generator.
        ``batch_size``: needed only when ``y`` is None. ``callback(StepInfo)`` runs every ``callback_every`` steps.
        """
        x, generators = initial_noise(self.prior, y, generator, batch_size, "DPS sampling")
        x = x_T if x_T is not None else x
        predict = NoisePredictor(self.prior, self.pag, cond=self.cond)
        x = run_chain(
            self.schedule,
            x,
            lambda i, x_t, noise: self.step(predict, i, x_t, y, noise, generators),
            generators,
            stochastic=True,
            desc="DPS" if y is not None else "DDPM",
            progress=self.progress,
            callback=callback,
            callback_every=callback_every,
        )
        return x.clamp(-1, 1)
