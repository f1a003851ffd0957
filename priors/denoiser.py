"""One view of an eps-prediction prior as a denoiser: what every solver reads off one noise prediction.

VP form, at step i of a sampling schedule (x_t = sqrt(abar) x0 + sqrt(1 - abar) n):
    x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar)          Tweedie's E[x0 | x_t] (optionally clamped to [-1, 1])
    eps    = (x_t - sqrt(abar) x0) / sqrt(1 - abar)           the noise that maps x0 to x_t
    score  = grad log p(x_t) = -eps / sqrt(1 - abar)

EDM form (Karras et al. 2022, Table 1, VP column; k-diffusion ``external.py``, ``DiscreteEpsDDPMDenoiser``): the same
process rescaled, x = x0 + sigma n with
    sigma_t = sqrt((1 - abar_t) / abar_t),   x_vp = x / sqrt(1 + sigma^2),   D(x; sigma) = x - sigma eps(x_vp, t)
(c_skip 1, c_out -sigma, c_in 1 / sqrt(1 + sigma^2)). These formulas hold for any sigma > 0; the network is told an
integer training timestep, so ``EDMDenoiser.snap`` maps a continuous sigma to the training step whose sigma_t is
nearest (in log sigma) and a solver then uses exactly that sigma_t.

The view takes the prediction (``eps``, or what ``solvers.NoisePredictor`` combined for PAG / CFG) and the schedule
index; it never runs the network, so guidance stays the predictor's business.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .schedule import NoiseSchedule, SamplingSchedule


class VPDenoiser:
    """Tweedie's x0_hat, the noise and the score at step ``i`` of a sampling schedule (module docstring).

    clip_x0: clamp x0_hat to [-1, 1] (guided-diffusion's ``clip_denoised``; DPS and DiffPIR do, PSLD's latents not).
    """

    def __init__(self, schedule: SamplingSchedule, clip_x0: bool = False):
        self.schedule = schedule
        self.clip_x0 = clip_x0

    def x0(self, i: int, x_t: Tensor, eps: Tensor) -> Tensor:
        """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), clamped to [-1, 1] when ``clip_x0``."""
        x0 = self.schedule.predict_x0(i, x_t, eps)
        return x0.clamp(-1, 1) if self.clip_x0 else x0

    def eps(self, i: int, x_t: Tensor, x0: Tensor) -> Tensor:
        """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t): the noise that x0 implies at x_t."""
        return self.schedule.predict_eps(i, x_t, x0)

    def score(self, i: int, eps: Tensor) -> Tensor:
        """grad_{x_t} log p_t(x_t) = -eps / sqrt(1 - abar_t)."""
        abar = self.schedule.alphas_cumprod[i]
        return eps * (-1 / (1 - abar).sqrt()).to(device=eps.device, dtype=eps.dtype)

    def sigma(self, i: int) -> float:
        """The EDM noise level of step i: sigma_t = sqrt((1 - abar_t) / abar_t)."""
        abar = float(self.schedule.alphas_cumprod[i])
        return math.sqrt((1 - abar) / abar)


class EDMDenoiser:
    """D(x; sigma) of a VP eps-prediction prior, at the noise levels of its discrete training schedule."""

    def __init__(self, schedule: NoiseSchedule):
        abar = schedule.alphas_cumprod
        self.sigmas = ((1 - abar) / abar).sqrt()  # (T,) float64, increasing with t

    def snap(self, sigmas: Tensor) -> list[int]:
        """The training timestep whose sigma_t is nearest to each of ``sigmas`` (in log sigma), repeats dropped."""
        distance = (self.sigmas.log()[None, :] - torch.as_tensor(sigmas, dtype=torch.float64).log()[:, None]).abs()
        steps: list[int] = []
        for t in distance.argmin(dim=1).tolist():
            if not steps or t != steps[-1]:
                steps.append(int(t))
        return steps

    def sigma(self, t: int) -> float:
        """sigma_t of training timestep t."""
        return float(self.sigmas[t])

    @staticmethod
    def vp_input(x: Tensor, sigma: float) -> Tensor:
        """x_vp = x / sqrt(1 + sigma^2): the network's input (c_in) for the EDM-scaled x at noise level sigma."""
        return x * (1 / math.sqrt(1 + sigma**2))

    @staticmethod
    def denoise(x: Tensor, sigma: float, eps: Tensor) -> Tensor:
        """D(x; sigma) = x - sigma eps (c_skip 1, c_out -sigma), eps predicted at ``vp_input(x, sigma)``."""
        return x - sigma * eps
