"""ReSample: hard data consistency with latent diffusion (Song et al., ICLR 2024), with optional PAG.

Official code: soominkwon/resample, ``ldm/models/diffusion/ddim.py`` (``resample_sampling``, ``pixel_optimization``,
``latent_optimization``, ``stochastic_resample``), ``ldm_inverse/condition_methods.py`` (the latent-DPS term) and
``sample_condition.py`` (500 DDIM steps, eta 0). Per DDIM step i (timestep t_i, abar_t = abar at t_i, abar_prev at
t_{i+1}, the official ``index`` = N - 1 - i counting down):

    eps, eps_guided  = unet(z_t, t_i)                                  (eps_guided: PAG)
    z0_hat           = (z_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)      (Tweedie; the data term's estimate)
    z'_{t-1}         = sqrt(abar_prev) z0(eps_guided) + sqrt(1 - abar_prev) eps_guided          (DDIM, eta = 0)
    z'_{t-1}        -= zeta abar_t grad_{z_t} ||y - A(D(z0_hat))||     (latent DPS; the official passes
                                                                        scale = 0.5 abar_t, its configs' ``scale``
                                                                        is never read)

and, at the steps whose ``index`` is a multiple of ``resample_every`` (10) with 0 < index <= N - N // 3, hard data
consistency then stochastic resampling:

    z0_hat     <- ``travel_steps`` (5) further DDIM steps from z'_{t-1}, the Tweedie estimate of the last one
                  (the official "time travel")
    z0_y        = E(argmin_x ||y - A(x)||^2 from x = D(z0_hat))   (pixel phase: index >= N // 3)
                = argmin_z ||y - A(D(z))||^2 from z = z0_hat      (latent phase: index < N // 3)
                  (AdamW as the official: pixel lr 1e-2, <= 2000 iterations; latent lr 5e-3, <= 500 iterations,
                  also stopped once the loss exceeds the loss 200 iterations before; both stopped once the mean
                  squared residual is below tol^2 = 1e-6)
    sigma_t^2   = gamma (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev)      (gamma = 40, official)
    z_{t-1}    ~ N( (sigma_t^2 sqrt(abar_prev) z0_y + (1 - abar_prev) z'_{t-1}) / (sigma_t^2 + 1 - abar_prev),
                    sigma_t^2 (1 - abar_prev) / (sigma_t^2 + 1 - abar_prev) I )

The last formula is the paper's stochastic resampling (its Sec. 3: the Gaussian that combines the forward-process
sample sqrt(abar) z0_y + sqrt(1 - abar) n with the unconditional sample z'_{t-1} of variance
sigma_t^2 treated as a measurement; the official ``stochastic_resample`` writes its variance as
1 / (1 / sigma_t^2 + 1 / (1 - abar_prev))). After the last step the official sampler runs one more latent
optimisation from z_0 (``final_latent``).

PAG (the paper's rule): the DDIM step and nothing else uses eps_guided; the latent-DPS gradient, the look-ahead
that gives the anchor z0_hat and so the optimisation see the unguided eps (``pag.x0_from="guided"``: eps_guided).

Deviations from the official code (``reference=True`` restores the first two):
- Tweedie: the official ``pseudo_x0`` is (z_t - (1 - abar_t) eps) / sqrt(abar_t) (eps where the score form has
  sqrt(1 - abar_t) eps); here the Tweedie formula the paper states.
- The look-ahead: the official reuses each step's abar one level too high (the network sees t_{k+1}, the DDIM
  arithmetic abar at t_k); here the abar of the level the latent is at.
- Batches: every norm, loss and stopping rule is per image (the official runs one image; its norm and MSE over a
  batch would couple images), so a batch equals its images run one by one; ``reference`` keeps the per-image
  optimisation but takes the latent-DPS norm over the whole batch.
- Only eta = 0 (the official default), no text prompt (the official model is unconditional).
- Not a deviation but worth knowing: tol is the official 1e-3 whatever the noise level (its code says it "needs
  tuning according to noise level"); with noise sigma 0.05 on [-1, 1] the searches run to their iteration limits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

import torch
from torch import Tensor

from operators import Operator
from priors import LatentPrior, VPDenoiser

from .chain import ChainSolver, StepContext
from .common import batch_norm, residual_norm
from .guidance import PAG
from .psld import ldm_ddim_timesteps

#: the official sampler splits the chain in three: plain DPS, then pixel, then latent optimisation (``splits = 3``)
PHASES = 3


def stochastic_resample(z0_y: Tensor, z_prime: Tensor, abar: float, sigma2: float, noise: Tensor) -> Tensor:
    """A draw of N((sigma2 sqrt(abar) z0_y + (1 - abar) z') / (sigma2 + 1 - abar), sigma2 (1 - abar) / (sigma2 +
    1 - abar) I) from ``noise`` ~ N(0, I) (ReSample Sec. 3.2)."""
    mean = (sigma2 * abar**0.5 * z0_y + (1 - abar) * z_prime) / (sigma2 + 1 - abar)
    return mean + (sigma2 * (1 - abar) / (sigma2 + 1 - abar)) ** 0.5 * noise


def per_image_mse(y: Tensor, y_hat: Tensor) -> Tensor:
    """Mean squared residual of each image (shape (B,)): the official ``MSELoss`` of a one-image batch."""
    return (y - y_hat).pow(2).flatten(1).mean(dim=1)


def adamw_fit(
    x0: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    *,
    lr: float,
    max_iters: int,
    tol: float,
    weight_decay: float,
    patience: int | None = None,
) -> Tensor:
    """argmin_x loss_fn(x) by AdamW from ``x0``, image by image (one optimiser and one stopping rule each):
    ``loss_fn`` maps a batch to its per-image losses (B,). As the official loops: each iteration computes the loss,
    steps, then stops an image whose loss was below tol^2, or (``patience``) above its loss ``patience``
    iterations before."""
    leaves = [x0[b : b + 1].detach().clone().requires_grad_(True) for b in range(x0.shape[0])]
    optimisers = [torch.optim.AdamW([p], lr=lr, weight_decay=weight_decay) for p in leaves]
    history: list[deque[float]] = [deque() for _ in leaves]
    active = list(range(len(leaves)))
    with torch.enable_grad():
        for _ in range(max_iters):
            if not active:
                break
            losses = loss_fn(torch.cat(leaves))
            grads = torch.autograd.grad(losses[active].sum(), [leaves[b] for b in active])
            values, still = losses.detach().tolist(), []
            for b, grad in zip(active, grads, strict=True):
                leaves[b].grad = grad
                optimisers[b].step()
                loss = values[b]
                if patience is not None:
                    history[b].append(loss)
                    if len(history[b]) > patience:
                        if history[b][0] < loss:
                            continue
                        history[b].popleft()
                if loss >= tol**2:
                    still.append(b)
            active = still
    return torch.cat(leaves).detach()


@dataclass(eq=False)
class ReSample(ChainSolver):
    """ReSample over a latent prior (``encode``/``decode``); ``operator=None``: plain DDIM.

    Args:
        prior: a latent prior (``prior.is_latent``).
        operator: the measurement operator A in pixel space (any differentiable one).
        zeta: latent-DPS step size, zeta abar_t at step t (official 0.5); gamma: the resampling variance's scale
            (official 40).
        num_steps: DDIM steps (official 500). resample_every: hard data consistency where the step index counted
            down is a multiple of it (official 10). travel_steps: DDIM steps ahead for the anchor z0_hat (5).
        pixel_lr / pixel_iters, latent_lr / latent_iters / latent_patience, tol, weight_decay: the optimisations
            (official AdamW 1e-2 / 2000, 5e-3 / 500 / 200, eps 1e-3, AdamW's default weight decay 0.01).
        final_latent: the official latent optimisation of z_0 after the last step.
        pag: Perturbed-Attention Guidance, or None.
        reference: the official Tweedie and look-ahead arithmetic and batch-wide DPS norm (module docstring).
    """

    stochastic = False  # the resampling draws its own noise, only at the steps that resample

    prior: LatentPrior = field(repr=False)
    operator: Operator | None = field(default=None, repr=False)
    zeta: float = 0.5
    gamma: float = 40.0
    _: KW_ONLY
    num_steps: int = 500
    resample_every: int = 10
    travel_steps: int = 5
    pixel_lr: float = 1e-2
    pixel_iters: int = 2000
    latent_lr: float = 5e-3
    latent_iters: int = 500
    latent_patience: int = 200
    tol: float = 1e-3
    weight_decay: float = 0.01
    final_latent: bool = True
    pag: PAG | None = None
    progress: bool = True
    reference: bool = False

    def __post_init__(self) -> None:
        prior = self.prior
        if not prior.is_latent:
            raise ValueError("ReSample runs on latent priors (with encode/decode); use DPS for pixel-space priors")
        self.zeta, self.gamma = float(self.zeta), float(self.gamma)
        # counts come from the step table as floats
        self.pixel_iters, self.latent_iters = int(self.pixel_iters), int(self.latent_iters)
        self.resample_every = int(self.resample_every)
        if min(self.pixel_iters, self.latent_iters) < 0 or self.resample_every < 1:
            raise ValueError("pixel_iters and latent_iters must be >= 0, resample_every >= 1")
        spacing, offset = ldm_ddim_timesteps(prior.schedule.num_train_timesteps, self.num_steps)
        timesteps = prior.schedule.timesteps(self.num_steps, spacing=spacing, offset=offset)
        # LDM's DDIM: the step after the last one lands on abar[0] (``make_ddim_sampling_parameters``)
        self.schedule = prior.schedule.sampling(timesteps, final_alpha_cumprod=float(prior.schedule.alphas_cumprod[0]))
        self.timesteps = self.schedule.timesteps.tolist()
        self.denoiser = VPDenoiser(self.schedule)

    # -- the schedule ----------------------------------------------------------------------------------
    def abar(self, i: int) -> float:
        return float(self.schedule.alphas_cumprod[i])

    def abar_prev(self, i: int) -> float:
        return float(self.schedule.alphas_cumprod_prev[i])

    def tweedie(self, level: int, z: Tensor, eps: Tensor) -> Tensor:
        """z0_hat = (z - sqrt(1 - abar) eps) / sqrt(abar) at step ``level``'s abar (reference: the official
        (z - (1 - abar) eps) / sqrt(abar))."""
        if self.reference:
            abar = self.abar(level)
            return (z - (1 - abar) * eps) / abar**0.5
        return self.denoiser.x0(level, z, eps)

    def ddim(self, level: int, z: Tensor, eps: Tensor) -> Tensor:
        """Deterministic DDIM (eta = 0) from step ``level``'s abar to the next one's."""
        return self.schedule.ddim_step(level, self.denoiser.x0(level, z, eps), eps)

    def sigma2(self, i: int) -> float:
        """sigma_t^2 = gamma (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev) (official schedule)."""
        a, a_prev = self.abar(i), self.abar_prev(i)
        return self.gamma * (1 - a_prev) / (1 - a) * (1 - a / a_prev)

    def phase(self, i: int) -> str | None:
        """``"pixel"`` / ``"latent"`` where step i resamples, else None (official index rules)."""
        n = len(self.timesteps)
        index, split = n - 1 - i, n // PHASES
        if not (0 < index <= n - split and index % self.resample_every == 0):
            return None
        return "pixel" if index >= split else "latent"

    # -- the data-consistency parts --------------------------------------------------------------------
    def anchor(self, ctx: StepContext, i: int, z: Tensor) -> Tensor:
        """z0_hat from up to ``travel_steps`` DDIM steps from z (at t_{i+1}) on the data eps: the Tweedie estimate
        of the last one (the official "time travel")."""
        guide = self.pag is not None and self.pag.x0_from == "guided"
        z0_hat = z
        for k in range(i, min(i + self.travel_steps, len(self.timesteps) - 1)):
            eps = ctx.predict(z, self.timesteps[k + 1], guide=guide).eps_data
            level = k if self.reference else k + 1  # the official reads abar one level too high
            z0_hat = self.tweedie(level, z, eps)
            z = self.ddim(level, z, eps)
        return z0_hat

    def pixel_search(self, x0: Tensor, y: Tensor) -> Tensor:
        """argmin_x ||y - A(x)||^2, the search started at x0."""
        return adamw_fit(
            x0,
            lambda x: per_image_mse(y, self.operator(x)),
            lr=self.pixel_lr,
            max_iters=self.pixel_iters,
            tol=self.tol,
            weight_decay=self.weight_decay,
        )

    def pixel_optimisation(self, z0_hat: Tensor, y: Tensor) -> Tensor:
        """z0_y = E(argmin_x ||y - A(x)||^2), the search started at D(z0_hat)."""
        return self.prior.encode(self.pixel_search(self.prior.decode(z0_hat), y))

    def latent_optimisation(self, z_init: Tensor, y: Tensor) -> Tensor:
        """z0_y = argmin_z ||y - A(D(z))||^2, the search started at z_init."""
        return adamw_fit(
            z_init,
            lambda z: per_image_mse(y, self.operator(self.prior.decode(z))),
            lr=self.latent_lr,
            max_iters=self.latent_iters,
            tol=self.tol,
            weight_decay=self.weight_decay,
            patience=self.latent_patience,
        )

    # -- the step --------------------------------------------------------------------------------------
    def step(self, ctx: StepContext, i: int, z_t: Tensor) -> tuple[Tensor, Tensor]:
        """One ReSample step: returns (z_{t-1}, z0_hat), both detached."""
        y = ctx.y
        data_term = y is not None and self.operator is not None
        abar_t, abar_prev = self.abar(i), self.abar_prev(i)
        with torch.set_grad_enabled(data_term):
            z_t = z_t.detach().requires_grad_(data_term)
            pred = ctx.predict(z_t, self.timesteps[i])
            z0_hat = self.tweedie(i, z_t, pred.eps_data)  # unguided (paper's rule): the data term's estimate
            z_prev = self.ddim(i, z_t.detach(), pred.eps_guided.detach())
            if data_term:
                norm = batch_norm if self.reference else residual_norm
                loss = norm(y, self.operator(self.prior.decode(z0_hat))).sum()
                z_prev = z_prev - self.zeta * abar_t * torch.autograd.grad(loss, z_t)[0]
        z_prev, z0_hat = z_prev.detach(), z0_hat.detach()
        if not data_term:
            return z_prev, z0_hat
        with torch.no_grad():
            phase = self.phase(i)
            if phase is not None:
                anchor = self.anchor(ctx, i, z_prev)
                optimise = self.pixel_optimisation if phase == "pixel" else self.latent_optimisation
                z0_y = optimise(anchor, y)
                z_prev = stochastic_resample(z0_y, z_prev, abar_prev, self.sigma2(i), ctx.randn(z_prev))
            if self.final_latent and i == len(self.timesteps) - 1:
                z_prev = self.latent_optimisation(z_prev, y)
        return z_prev, z0_hat

    @property
    def nfe(self) -> int:
        """Network evaluations per image without PAG: one per step and the look-ahead steps."""
        n = len(self.timesteps)
        return n + sum(min(self.travel_steps, n - 1 - i) for i in range(n) if self.phase(i) is not None)
