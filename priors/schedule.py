"""Discrete variance-preserving noise schedules and the per-step formulas the samplers use.

x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   abar_t = prod_{s<=t} (1 - beta_s).

``NoiseSchedule`` holds the training schedule (1000 steps). ``NoiseSchedule.sampling(timesteps)``
gives a ``SamplingSchedule`` over a (possibly respaced) descending subsequence, with the DDPM posterior
(guided-diffusion's respacing: beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}}), the learned-range variance
of ADM, and the DDIM update. All constants are float64; they are cast to the tensor's dtype at use.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class NoiseSchedule:
    """A training noise schedule: ``betas[t]`` for t = 0 .. T-1 (float64)."""

    betas: Tensor

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) == 0:
            raise ValueError("betas must be a non-empty 1-D sequence")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        object.__setattr__(self, "betas", betas)

    # -- constructors -----------------------------------------------------------------------------
    @classmethod
    def linear(cls, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """guided-diffusion's "linear" schedule (the ADM / DPS one); rescaled for T != 1000 as it does."""
        scale = 1000 / num_train_timesteps
        return cls(torch.linspace(beta_start * scale, beta_end * scale, num_train_timesteps, dtype=torch.float64))

    @classmethod
    def scaled_linear(
        cls, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
    ) -> NoiseSchedule:
        """Stable Diffusion's schedule: betas linear in sqrt space."""
        root = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num_train_timesteps, dtype=torch.float64)
        return cls(root**2)

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: Sequence[float] | Tensor) -> NoiseSchedule:
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        prev = torch.cat([abar.new_ones(1), abar[:-1]])
        return cls(1 - abar / prev)

    @classmethod
    def from_diffusers(cls, scheduler) -> NoiseSchedule:
        """The training schedule of a diffusers scheduler (DDPM/DDIM/... all expose ``betas``)."""
        return cls(torch.as_tensor(scheduler.betas, dtype=torch.float64))

    # -- properties -------------------------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> Tensor:
        return torch.cumprod(1 - self.betas, dim=0)

    # -- respacing --------------------------------------------------------------------------------
    def timesteps(self, num_steps: int | None = None, spacing: str = "even", offset: int = 0) -> list[int]:
        """A descending subsequence of ``num_steps`` training timesteps.

        - ``even``: guided-diffusion's ``space_timesteps(T, [n])``: round(i (T-1)/(n-1)), includes 0 and T-1.
        - ``leading``: LDM / diffusers DDIM: range(0, T, T // n) + offset (SD uses offset 1).
        - ``trailing``: round(linspace(T, 0, n, endpoint=False)) - 1, ends at T-1.
        """
        T = self.num_train_timesteps
        n = T if num_steps is None else int(num_steps)
        if not 1 <= n <= T:
            raise ValueError(f"num_steps must be between 1 and {T}, got {num_steps}")
        if spacing == "even":
            if n == 1:
                steps = [T - 1]
            else:
                stride = (T - 1) / (n - 1)
                steps = sorted({round(i * stride) for i in range(n)})
        elif spacing == "leading":
            stride = T // n
            steps = [min(i * stride + offset, T - 1) for i in range(n)]
        elif spacing == "trailing":
            steps = [round(T - i * T / n) - 1 for i in range(n)][::-1]
        else:
            raise ValueError(f"unknown spacing {spacing!r}; valid: 'even', 'leading', 'trailing'")
        if len(set(steps)) != n:
            raise ValueError(f"spacing {spacing!r} with offset {offset} does not give {n} distinct timesteps")
        return sorted(steps, reverse=True)

    def sampling(self, timesteps: Sequence[int], final_alpha_cumprod: float = 1.0) -> SamplingSchedule:
        """The sampling schedule over ``timesteps`` (descending).

        ``final_alpha_cumprod``: abar after the last step (1.0 = a clean image; DDIM in SD/LDM uses abar[0]).
        """
        ts = [int(t) for t in timesteps]
        if any(a <= b for a, b in itertools.pairwise(ts)):
            raise ValueError("timesteps must be strictly decreasing")
        if ts[0] >= self.num_train_timesteps or ts[-1] < 0:
            raise ValueError(f"timesteps must lie in [0, {self.num_train_timesteps - 1}]")
        abar = self.alphas_cumprod[ts]
        abar_prev = torch.cat([abar[1:], abar.new_tensor([final_alpha_cumprod])])
        return SamplingSchedule(torch.tensor(ts, dtype=torch.long), abar, abar_prev)


@dataclass(frozen=True)
class SamplingSchedule:
    """Per-step constants for a descending timestep sequence; step ``i`` goes from t_i to t_{i+1}."""

    timesteps: Tensor  # (N,) long, descending: what the network is told
    alphas_cumprod: Tensor  # (N,) float64, abar at t_i
    alphas_cumprod_prev: Tensor  # (N,) float64, abar at t_{i+1} (final_alpha_cumprod for the last step)

    def __len__(self) -> int:
        return len(self.timesteps)

    @property
    def betas(self) -> Tensor:
        """Respaced betas: 1 - abar_t / abar_prev."""
        return 1 - self.alphas_cumprod / self.alphas_cumprod_prev

    @property
    def posterior_variance(self) -> Tensor:
        """Variance of q(x_prev | x_t, x_0): beta (1 - abar_prev) / (1 - abar_t)."""
        return self.betas * (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)

    @property
    def posterior_log_variance_clipped(self) -> Tensor:
        """log posterior variance, the zero variance of a final step to a clean image replaced by the next
        one's (guided-diffusion's clipping)."""
        var = self.posterior_variance.clone()
        if len(var) > 1 and var[-1] == 0:
            var[-1] = var[-2]
        return torch.log(var.clamp_min(1e-20))

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _c(value: Tensor, like: Tensor) -> Tensor:
        """A float64 constant cast to ``like``'s device and dtype."""
        return value.to(device=like.device, dtype=like.dtype)

    # -- Tweedie ----------------------------------------------------------------------------------
    def predict_x0(self, i: int, x_t: Tensor, eps: Tensor) -> Tensor:
        """Tweedie's estimate x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        abar = self.alphas_cumprod[i]
        return x_t * self._c(1 / abar.sqrt(), x_t) - eps * self._c((1 / abar - 1).sqrt(), eps)

    def predict_eps(self, i: int, x_t: Tensor, x0: Tensor) -> Tensor:
        """The noise that maps x0 to x_t: eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""
        abar = self.alphas_cumprod[i]
        return (x_t - x0 * self._c(abar.sqrt(), x0)) * self._c(1 / (1 - abar).sqrt(), x_t)

    def add_noise(self, i: int, x0: Tensor, eps: Tensor) -> Tensor:
        """Forward process q(x_t | x_0) at step i."""
        abar = self.alphas_cumprod[i]
        return x0 * self._c(abar.sqrt(), x0) + eps * self._c((1 - abar).sqrt(), eps)

    # -- DDPM ancestral step ----------------------------------------------------------------------
    def posterior_mean(self, i: int, x0: Tensor, x_t: Tensor) -> Tensor:
        """Mean of q(x_prev | x_t, x_0)."""
        abar, abar_prev, beta = self.alphas_cumprod[i], self.alphas_cumprod_prev[i], self.betas[i]
        coef_x0 = beta * abar_prev.sqrt() / (1 - abar)
        coef_xt = (1 - abar_prev) * (1 - beta).sqrt() / (1 - abar)
        return x0 * self._c(coef_x0, x0) + x_t * self._c(coef_xt, x_t)

    def log_variance(self, i: int, like: Tensor, variance: str = "fixed_small", var_values: Tensor | None = None):
        """log variance of p(x_prev | x_t) for guided-diffusion's variance types.

        - ``learned_range``: ADM's interpolation frac * log(beta) + (1 - frac) * log(posterior var),
          frac = (v + 1) / 2 with v the model's extra output channels;
        - ``fixed_small``: the (clipped) posterior variance; ``fixed_large``: beta (posterior var at the last step).
        """
        min_log = self.posterior_log_variance_clipped[i]
        if variance == "learned_range":
            if var_values is None:
                raise ValueError("learned_range variance needs the model's var_values")
            max_log = torch.log(self.betas[i])
            frac = (var_values + 1) / 2
            return frac * self._c(max_log, var_values) + (1 - frac) * self._c(min_log, var_values)
        if variance == "fixed_small":
            return self._c(min_log, like).expand_as(like)
        if variance == "fixed_large":
            log_beta = torch.log(self.betas[i]) if i < len(self) - 1 else min_log
            return self._c(log_beta, like).expand_as(like)
        raise ValueError(f"unknown variance type {variance!r}; valid: learned_range, fixed_small, fixed_large")

    def ddpm_step(self, i: int, x0: Tensor, x_t: Tensor, noise: Tensor, log_variance: Tensor) -> Tensor:
        """Ancestral sample x_prev = mean + exp(log_var / 2) z; no noise on the final step (t_prev = clean)."""
        mean = self.posterior_mean(i, x0, x_t)
        if i == len(self) - 1:
            return mean
        return mean + torch.exp(0.5 * log_variance) * noise

    # -- DDIM -------------------------------------------------------------------------------------
    def ddim_sigma(self, i: int, eta: float) -> Tensor:
        """sigma_i = eta sqrt((1 - abar_prev) / (1 - abar) (1 - abar / abar_prev)) (Song et al., eq. 16)."""
        abar, abar_prev = self.alphas_cumprod[i], self.alphas_cumprod_prev[i]
        return eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()

    def ddim_step(self, i: int, x0: Tensor, eps: Tensor, eta: float = 0.0, noise: Tensor | None = None) -> Tensor:
        """x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z."""
        abar_prev = self.alphas_cumprod_prev[i]
        sigma = self.ddim_sigma(i, eta)
        x_prev = x0 * self._c(abar_prev.sqrt(), x0) + eps * self._c((1 - abar_prev - sigma**2).sqrt(), eps)
        if eta > 0:
            if noise is None:
                raise ValueError("DDIM with eta > 0 needs noise")
            x_prev = x_prev + self._c(sigma, noise) * noise
        return x_prev
