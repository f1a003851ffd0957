"""RED-diff: variational posterior sampling (Mardani et al., ICLR 2024), with optional PAG.

The posterior is approximated by q(x0 | y) = N(mu, sigma_x0^2 I) (sigma_x0 -> 0: a point) and mu is found by Adam
on a loss whose regulariser is the diffusion prior's score matching, swept over the schedule from t = T to 0
(paper Algorithm 1; official code NVlabs/RED-diff ``algos/reddiff.py``). Per step, noisiest first:

    eps     ~ N(0, I)                                            (the chain's per-step draw)
    x0_pred = mu + sigma_x0 n                                    (n ~ N(0, I); only drawn when sigma_x0 > 0)
    x_t     = sqrt(abar_t) x0_pred + sqrt(1 - abar_t) eps
    eps_pred = eps_theta(x_t, t)                                 (no gradient through the network)
    w_t     = lambda * snr_inv_t,   snr_inv_t = sqrt(1 - abar_t) / sqrt(abar_t)   ("linear"; see ``weight``)
    loss    = v * mean((y - A(x0_pred))^2) / 2 + w_t * mean(stop_grad(eps_pred - eps) * x0_pred)
    mu      = Adam step on loss                                  (lr, betas (0.9, 0.99), eps 1e-8)

starting from mu_0 = H_pinv(y) as the official ``initialize`` (``init="auto"``: A^+ y for inpainting and SR, as
there; y itself for other measurements of the image's shape, as the official H_pinv of its blind / nonlinear blur and
JPEG operators; zeros otherwise). The means are per
image (over the image's measurement / pixel entries), as the official loss for a batch of one.

Where PAG enters. The network is read in one place: the regulariser's eps_pred, the prior's pull on mu (the
sampler's move), so eps_pred is ``eps_guided``. The data term is ||y - A(mu)||^2 and never sees the network, so
there is no unguided estimate for it to take: ``pag.x0_from`` has no effect (both give the same numbers, tested).
PAG scale 0 is no PAG bit for bit (``NoisePredictor`` runs no perturbed pass and eps_guided is eps).

Deliberate differences from the official code:
- Each image's loss is its own mean (summed over the batch); the official loss is one mean over the batch, which
  scales every gradient by 1 / B. Adam undoes a common scale except through its eps (1e-8), so this changes the
  numbers only through eps for B > 1, and makes a batch of N equal N single-image runs.
- Timesteps: our ``leading`` spacing range(0, T, T // N) reversed, N steps; the official ``get_timesteps`` uses the
  same stride but takes ceil(T / stride) steps, so the two agree whenever N divides T (10, 50, 100, 1000).
- The result is mu after the last Adam step (paper Algorithm 1); the official ``sample`` returns x0_pred of the
  last iteration, i.e. mu before its last update (plus sigma_x0 n).
- Gaussian deblurring starts at y, not at A^+ y: the official ``deblur_gauss`` pseudo-inverse zeroes singular values
  below 3e-2 and its runs are noiseless; with noise (sigma 0.05) the exact A^+ y of our blur is amplified noise far
  outside [-1, 1] (``init="pinv"`` still gives it).
- x0_pred's noise n is drawn after the step's eps (the official draws it first); only matters for sigma_x0 > 0.
- The network runs without an autograd graph (the official builds one through it and detaches its output).
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal

import torch
from torch import Tensor

from operators import Operator
from priors import DiffusionPrior

from .chain import ChainSolver, StepContext
from .guidance import PAG

#: the official ``denoise_term_weight`` choices: functions of snr_inv = sqrt(1 - abar) / sqrt(abar)
WEIGHTS = ("linear", "sqrt", "square", "log", "trunc_linear", "power2over3", "const")
INITS = ("auto", "pinv", "measurement", "zeros", "x_T")
#: Adam's constants in the official code (``torch.optim.Adam([mu], lr, betas=(0.9, 0.99), weight_decay=0)``)
ADAM_BETAS = (0.9, 0.99)
ADAM_EPS = 1e-8


def snr_weight(snr_inv: float, kind: str) -> float:
    """The official ``denoise_term_weight`` applied to snr_inv = sqrt(1 - abar_t) / sqrt(abar_t)."""
    if kind == "linear":
        return snr_inv
    if kind == "sqrt":
        return math.sqrt(snr_inv)
    if kind == "square":
        return snr_inv**2
    if kind == "log":
        return math.log(snr_inv + 1.0)
    if kind == "trunc_linear":
        return min(snr_inv, 1.0)
    if kind == "power2over3":
        return snr_inv ** (2 / 3)
    if kind == "const":
        return 1.0
    raise ValueError(f"weight must be one of {WEIGHTS}, got {kind!r}")


@dataclass
class AdamState:
    """Adam's moments of mu and its step count (torch.optim.Adam's update, written out)."""

    m: Tensor
    v: Tensor
    k: int = 0

    def step(self, mu: Tensor, grad: Tensor, lr: float) -> Tensor:
        """mu - lr m_hat / (sqrt(v_hat) + eps), as ``torch.optim.Adam`` computes it."""
        b1, b2 = ADAM_BETAS
        self.k += 1
        self.m = self.m * b1 + grad * (1 - b1)
        self.v = self.v * b2 + grad * grad * (1 - b2)
        denom = self.v.sqrt() / math.sqrt(1 - b2**self.k) + ADAM_EPS
        return mu - (lr / (1 - b1**self.k)) * self.m / denom


@dataclass(eq=False)
class REDDiff(ChainSolver):
    """RED-diff over a pixel-space prior (see the module docstring).

    Args:
        prior: a pixel-space prior.
        operator: a differentiable measurement operator A (linear or not).
        lam: lambda, the regulariser's weight (the official ``grad_term_weight``).
        lr: Adam's learning rate on mu.
        num_steps: steps (network evaluations) over t = T - T / N ... 0.
        pag: Perturbed-Attention Guidance (enters the regulariser's eps_pred), or None.
        obs_weight: v, the data term's weight (the official ``obs_weight``).
        weight: how w_t grows with snr_inv = sqrt(1 - abar_t) / sqrt(abar_t) (the official ``denoise_term_weight``).
        sigma_x0: std of q(x0 | y) around mu (the official ``sigma_x0``; 0: a point).
        init: mu_0. "pinv": A^+ y (the official); "measurement": y (same shape as the image); "zeros"; "x_T": the
            chain's N(0, I) start; "auto": A^+ y for inpainting (m y) and operators whose y has another shape than
            the image (SR), y for other same-shape operators (blur), zeros for nonlinear ones of another shape.
        cond: class labels for class-conditional ADMs.
        progress: show a tqdm bar over the steps.
    """

    requires_measurement = True

    prior: DiffusionPrior = field(repr=False)
    operator: Operator = field(repr=False)
    lam: float = 0.25
    lr: float = 0.1
    _: KW_ONLY
    num_steps: int = 1000
    pag: PAG | None = None
    obs_weight: float = 1.0
    weight: Literal["linear", "sqrt", "square", "log", "trunc_linear", "power2over3", "const"] = "linear"
    sigma_x0: float = 0.0
    init: Literal["auto", "pinv", "measurement", "zeros", "x_T"] = "auto"
    cond: object | None = field(default=None, repr=False)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.prior.is_latent:
            raise ValueError("RED-diff runs on pixel-space priors")
        if self.operator is None:
            raise ValueError("RED-diff needs a measurement operator")
        if self.weight not in WEIGHTS:
            raise ValueError(f"weight must be one of {WEIGHTS}, got {self.weight!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.init == "pinv" and not self.operator.is_linear:
            raise ValueError("RED-diff's init='pinv' needs a linear operator (A^+ y); use init=zeros or auto")
        if self.lr <= 0 or self.lam < 0 or self.obs_weight < 0 or self.sigma_x0 < 0:
            raise ValueError("need lr > 0 and lam, obs_weight, sigma_x0 >= 0")
        self.lam, self.lr = float(self.lam), float(self.lr)
        self.obs_weight, self.sigma_x0 = float(self.obs_weight), float(self.sigma_x0)
        self.schedule = self.prior.schedule.sampling(self.prior.schedule.timesteps(self.num_steps, spacing="leading"))
        self.timesteps = self.schedule.timesteps.tolist()
        self._adam: AdamState | None = None  # the run's optimiser state: made at step 0

    def resolved_init(self, y: Tensor, x_T: Tensor) -> str:
        """``init`` with "auto" resolved for this measurement (see the class docstring)."""
        if self.init != "auto":
            return self.init
        if y.shape == x_T.shape:
            return "pinv" if self.operator.observed_mask is not None else "measurement"
        return "pinv" if self.operator.is_linear else "zeros"

    def initial_mu(self, y: Tensor, x_T: Tensor) -> Tensor:
        """mu_0 (``init``): A^+ y, y, zeros or the chain's N(0, I) draw."""
        init = self.resolved_init(y, x_T)
        if init == "pinv":
            with torch.no_grad():
                return self.operator.pinv(y).to(x_T.dtype).reshape(x_T.shape)
        if init == "measurement":
            if y.shape != x_T.shape:
                raise ValueError(f"init='measurement' needs y of the image's shape {tuple(x_T.shape)}, got {y.shape}")
            return y.to(x_T.dtype).clone()
        return torch.zeros_like(x_T) if init == "zeros" else x_T

    def w(self, i: int) -> float:
        """w_t = lambda * weight(snr_inv_t), snr_inv_t = sqrt(1 - abar_t) / sqrt(abar_t)."""
        abar = float(self.schedule.alphas_cumprod[i])
        return self.lam * snr_weight(math.sqrt(1 - abar) / math.sqrt(abar), self.weight)

    def step(self, ctx: StepContext, i: int, mu: Tensor) -> tuple[Tensor, Tensor]:
        """One Adam step on mu at t_i: returns (the new mu, x0_pred: the point this step's network saw).

        Step 0 starts the run: mu_0 from ``init`` (the chain's x_T is used only by init="x_T") and fresh Adam state."""
        if i == 0 or self._adam is None:
            mu = self.initial_mu(ctx.y, mu)
            self._adam = AdamState(torch.zeros_like(mu), torch.zeros_like(mu))
        abar = float(self.schedule.alphas_cumprod[i])
        eps = ctx.noise
        x0_pred = mu if self.sigma_x0 == 0 else mu + self.sigma_x0 * ctx.randn(mu)
        x_t = math.sqrt(abar) * x0_pred + math.sqrt(1 - abar) * eps
        with torch.no_grad():
            eps_pred = ctx.predict(x_t, self.timesteps[i]).eps_guided  # the prior's move: PAG-guided
        with torch.enable_grad():
            mu_leaf = mu.detach().requires_grad_(True)
            x0 = mu_leaf if self.sigma_x0 == 0 else mu_leaf + (x0_pred - mu).detach()
            residual = ctx.y - self.operator(x0)
            loss_obs = residual.pow(2).flatten(1).mean(dim=1) / 2  # per image, the official mean / 2
            loss_noise = ((eps_pred - eps).detach() * x0).flatten(1).mean(dim=1)
            loss = (self.obs_weight * loss_obs + self.w(i) * loss_noise).sum()
            grad = torch.autograd.grad(loss, mu_leaf)[0]
        return self._adam.step(mu.detach(), grad, self.lr), x0_pred.detach()
