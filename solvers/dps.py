"""DPS: Diffusion Posterior Sampling (Chung et al., ICLR 2023) over a pixel-space prior, with optional PAG.

Per step, with x_t requiring grad (SPEC section 2):
    eps, v          = prior(x_t, t)                                   (+ eps_perturbed for PAG)
    x0_hat          = sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps,   clamped to [-1, 1]
    x'_{t-1}        = DDPM ancestral step from (x_t, x0 of eps_guided, learned variance)
    x_{t-1}         = x'_{t-1} - zeta * grad_{x_t} || y - A(x0_hat) ||_2        (per sample, not squared)
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from operators import Operator
from operators.random import Generators, as_generator_list, randn
from priors import DiffusionPrior

from .common import StepCallback, StepInfo, check_finite, residual_norm, should_call
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
    """

    def __init__(
        self,
        prior: DiffusionPrior,
        operator: Operator | None = None,
        zeta: float = 1.0,
        *,
        num_steps: int = 1000,
        pag: PAG | None = None,
        clip_x0: bool = True,
        cond: object | None = None,
        progress: bool = True,
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
        self.schedule = prior.schedule.sampling(prior.schedule.timesteps(num_steps, spacing="even"))

    def tweedie(self, i: int, x_t: Tensor, eps: Tensor) -> Tensor:
        x0 = self.schedule.predict_x0(i, x_t, eps)
        return x0.clamp(-1, 1) if self.clip_x0 else x0

    def step(
        self, predict: NoisePredictor, i: int, x_t: Tensor, y: Tensor | None, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One DPS step: returns (x_{t-1}, x0_hat), both detached."""
        t = int(self.schedule.timesteps[i])
        data_term = y is not None and self.operator is not None
        with torch.set_grad_enabled(data_term):
            x_t = x_t.detach().requires_grad_(data_term)
            pred = predict(x_t, t)
            x0_hat = self.tweedie(i, x_t, pred.eps)  # unguided: the data term's estimate
            x0_step = x0_hat if pred.eps_guided is pred.eps else self.tweedie(i, x_t, pred.eps_guided)
            var_values = pred.var_values.detach() if pred.var_values is not None else None
            log_var = self.schedule.log_variance(i, x_t, self.prior.variance, var_values)
            x_prev = self.schedule.ddpm_step(i, x0_step.detach(), x_t.detach(), noise, log_var)
            if data_term:
                loss = residual_norm(y, self.operator(x0_hat)).sum()
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
        if y is not None:
            Operator.check_image(y, "measurement y")
        batch = y.shape[0] if y is not None else batch_size
        if batch is None:
            raise ValueError("unconditional sampling needs batch_size")
        like = y if y is not None else next(self.prior.parameters(), torch.empty(0))
        device, dtype = like.device, (like.dtype if like.is_floating_point() else torch.float32)
        generators = as_generator_list(generator, batch, what="DPS sampling")
        x = x_T if x_T is not None else randn((batch, *self.prior.sample_shape), generators, device=device, dtype=dtype)
        predict = NoisePredictor(self.prior, self.pag, cond=self.cond)
        n = len(self.schedule)
        for i in tqdm(range(n), desc="DPS" if y is not None else "DDPM", disable=not self.progress, leave=False):
            noise = randn(x.shape, generators, device=x.device, dtype=x.dtype)
            x, x0_hat = self.step(predict, i, x, y, noise)
            t = int(self.schedule.timesteps[i])
            check_finite(x, i, t)
            if callback is not None and should_call(i, n, callback_every):
                callback(StepInfo(i=i, t=t, x_t=x, x0_hat=x0_hat, num_steps=n))
        return x.clamp(-1, 1)
