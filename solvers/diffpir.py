"""DiffPIR: Denoising Diffusion Models for Plug-and-Play Image Restoration (Zhu et al., CVPRW 2023), with PAG.

Per step from t_i to t_{i+1} (paper Algorithm 1; official code yuanzhi-zhu/DiffPIR ``main_ddpir_*.py``):
    eps, eps_guided = NoisePredictor(x_t, t)                       (PAG: eps_guided = eps + s (eps - eps_perturbed))
    x0_hat   = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),  clamped to [-1, 1]          (the denoiser, eq. 12)
    rho_t    = lambda sigma_y^2 / sigma_t^2,   sigma_t^2 = (1 - abar_t) / abar_t
    x0_data  = argmin_x ||y - A x||^2 + rho_t ||x - x0_hat||^2 = A.prox_l2(y, x0_hat, rho_t)  (data step, eq. 13)
    x0_step  = x0_data + (x0_guided - x0_hat)                   (PAG's correction; 0 without guidance)
    eps_hat  = (x_t - sqrt(abar_t) x0_step) / sqrt(1 - abar_t)                                   (eq. 14)
    x_{t-1}  = sqrt(abar_{t-1}) x0_step + sqrt(1 - abar_{t-1}) (sqrt(1 - zeta) eps_hat + sqrt(zeta) eps_t)  (eq. 15)

Where PAG enters. As in DPS + PAG (PSLD_PAG, PAG paper App. 0.A.3 / 0.C.1), the data term sees the *unguided*
prediction: the proximal anchor is x0_hat from eps. The guided prediction moves the sampler's step: the shift
x0_guided - x0_hat (both clamped to [-1, 1] with ``clip_x0``) is added after the data step. Where neither estimate
is clipped (and always with ``clip_x0=False``) the shift is -sigma_t (eps_guided - eps), sigma_t^2 = (1 - abar_t) /
abar_t, and the re-noising direction is eps_hat + (eps_guided - eps); where one of them is clipped the shift is
the difference of the clamped values, smaller in magnitude, and so is PAG's effect on those pixels.
``PAG(x0_from="guided")`` is the other choice: the anchor itself comes from eps_guided (the data step then
corrects the guided estimate and nothing is added after it).

Deliberate differences from the official code (each documented where it is written):
- sigma_y is the measurement noise std on the [0, 1] scale (the official code's ``noise_level_img``, 12.75 / 255
  for sigma 0.1 on [-1, 1]), floored at 0.001 like it, so lambda keeps the paper's values: with our operators'
  sigma on [-1, 1], sigma_y = sigma / 2.
- x_T ~ N(0, I) (the official deblur / inpaint scripts start from sqrt(abar_T / abar_{t_y}) y + noise, a 0.6 %
  weight on y at t_start = 999).
- The last step goes to abar = 1 through the data step (x_0 = x0_data); the official code skips the data step at
  its last NFE and returns the x_0 re-noised at t = 0 by the step before.
- eta (DDIM noise inside the (1 - zeta) part) is the official default 0 and not offered.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field

import numpy as np
import torch
from torch import Tensor

from operators import Operator
from priors import DiffusionPrior, VPDenoiser

from .chain import ChainSolver, StepContext
from .guidance import PAG

#: the official code's floor on the noise level in rho_t (noiseless measurements)
MIN_SIGMA_Y = 0.001


def quad_timesteps(num_train_timesteps: int, num_steps: int) -> list[int]:
    """The official ``skip_type='quad'`` sequence: seq_k = int(sqrt(k T^2 / (n - 1))), the last one minus 1,
    timesteps T - 1 - seq_k (descending: dense near t = 0)."""
    T, n = int(num_train_timesteps), int(num_steps)
    if n < 2:
        raise ValueError(f"DiffPIR's quadratic schedule needs num_steps >= 2, got {num_steps}")
    seq = [int(s) for s in np.sqrt(np.linspace(0, T**2, n))]
    seq[-1] -= 1
    timesteps = [T - 1 - s for s in seq]
    if len(set(timesteps)) != n:
        raise ValueError(f"num_steps={n} is too many for the quadratic schedule over {T} steps (repeated t)")
    return timesteps


def measurement_sigma(operator: Operator) -> float:
    """The operator's Gaussian noise std on the [-1, 1] scale (0 for noiseless); other noise models need
    ``sigma_y`` given explicitly."""
    sigma = operator.noise_sigma
    if sigma is None:
        raise ValueError(
            f"DiffPIR's rho_t needs a Gaussian noise level; {type(operator.noise).__name__} has none: pass sigma_y="
        )
    return sigma


@dataclass(eq=False)
class DiffPIR(ChainSolver):
    """DiffPIR posterior sampler over a pixel-space prior (see the module docstring).

    Args:
        prior: a pixel-space prior.
        operator: a linear measurement operator A with an exact adjoint.
        lam: lambda in rho_t = lambda sigma_y^2 / sigma_t^2 (data-step strength).
        zeta: share of fresh noise in the re-noising (0: deterministic, 1: DDPM-like).
        num_steps: network evaluations (the official quadratic schedule, t = 999 ... 0); 100 in the paper.
        pag: Perturbed-Attention Guidance, or None.
        sigma_y: measurement noise std on the [0, 1] scale; None: half the operator's Gaussian sigma on [-1, 1].
        clip_x0: clamp x0_hat to [-1, 1] (the official code's ``clip_denoised=True``).
        cg_max_iter, cg_tol: bounds of the iterative data steps (blur, generic operators); closed forms ignore them.
        cond: class labels for class-conditional ADMs.
        progress: show a tqdm bar over the steps.
    """

    requires_measurement = True

    prior: DiffusionPrior = field(repr=False)
    operator: Operator = field(repr=False)
    lam: float = 7.0
    zeta: float = 0.3
    _: KW_ONLY
    num_steps: int = 100
    pag: PAG | None = None
    sigma_y: float | None = None
    clip_x0: bool = True
    cg_max_iter: int = 50
    cg_tol: float = 1e-5
    cond: object | None = field(default=None, repr=False)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.prior.is_latent:
            raise ValueError("DiffPIR runs on pixel-space priors; use PSLD for latent priors")
        if self.operator is None:
            raise ValueError("DiffPIR needs a measurement operator (use solvers.sample for unconditional samples)")
        if not 0.0 <= self.zeta <= 1.0:
            raise ValueError(f"zeta must be in [0, 1], got {self.zeta}")
        if self.lam <= 0:
            raise ValueError(f"lambda must be > 0, got {self.lam}")
        self.lam, self.zeta = float(self.lam), float(self.zeta)
        sigma_y = measurement_sigma(self.operator) / 2 if self.sigma_y is None else float(self.sigma_y)
        self.sigma_y = max(MIN_SIGMA_Y, sigma_y)
        timesteps = quad_timesteps(self.prior.schedule.num_train_timesteps, self.num_steps)
        self.schedule = self.prior.schedule.sampling(timesteps)
        self.timesteps = self.schedule.timesteps.tolist()
        self.denoiser = VPDenoiser(self.schedule, clip_x0=self.clip_x0)

    def rho(self, i: int) -> float:
        """rho_t = lambda sigma_y^2 / sigma_t^2 with sigma_t^2 = (1 - abar_t) / abar_t."""
        abar = float(self.schedule.alphas_cumprod[i])
        return self.lam * self.sigma_y**2 * abar / (1 - abar)

    def step(self, ctx: StepContext, i: int, x_t: Tensor) -> tuple[Tensor, Tensor]:
        """One DiffPIR step: returns (x_{t-1}, x0_hat).

        The data step's anchor is x0_hat of the unguided prediction (``pag.x0_from="guided"``: of the guided one);
        the guided prediction moves the step after it (see the module docstring)."""
        x0_of = self.denoiser.x0
        with torch.no_grad():
            pred = ctx.predict(x_t, self.timesteps[i])
            x0_hat = x0_of(i, x_t, pred.eps_data)  # the data step's anchor: unguided unless pag.x0_from="guided"
            x0_data = self.operator.prox_l2(ctx.y, x0_hat, self.rho(i), max_iter=self.cg_max_iter, tol=self.cg_tol)
            x0_step = x0_data
            if pred.guided:  # PAG moves the sampler's step after the data step (a shift of 0 for the guided anchor)
                x0_step = x0_data + (x0_of(i, x_t, pred.eps_guided) - x0_hat)
            if i == len(self.timesteps) - 1:
                return x0_step, x0_hat
            abar_prev = float(self.schedule.alphas_cumprod_prev[i])
            eps_hat = self.denoiser.eps(i, x_t, x0_step)
            direction = math.sqrt(1 - self.zeta) * eps_hat + math.sqrt(self.zeta) * ctx.noise
            x_prev = math.sqrt(abar_prev) * x0_step + math.sqrt(1 - abar_prev) * direction
        return x_prev, x0_hat
