"""DAPS: Decoupled Annealing Posterior Sampling (Zhang et al., CVPR 2025), pixel and latent, with optional PAG.

Noise levels are EDM's (Karras et al. 2022): x = x0 + sigma n. A VP eps-prediction prior, trained on
x_vp = sqrt(abar_t) x0 + sqrt(1 - abar_t) n, is the same process rescaled, exactly:

    sigma_t = sqrt((1 - abar_t) / abar_t),   x_vp = x / sqrt(1 + sigma_t^2) = sqrt(abar_t) x,
    D(x; sigma_t) = x - sigma_t eps(x_vp, t)            (E[x0 | x], the denoiser)

(the official code's ``VPPrecond``: c_skip 1, c_out -sigma, c_in 1 / sqrt(1 + sigma^2)). Timesteps: the official
code feeds the network the non-integer time 999 t(sigma) of the continuous VP SDE (beta_min 0.1, beta_d 19.9)
that approximates the discrete linear schedule. Our priors take integer training timesteps, so every noise level
of the annealing and ODE grids is snapped to the nearest sigma_t of the prior's own discrete schedule (in log
sigma) and the solver then uses exactly that sigma_t: each network call sees its input at the noise level it was
trained for. Repeated levels after snapping (low noise) are dropped, so an ODE may take fewer Euler steps.

One annealing step i (sigma_i on EDM's poly-rho grid from sigma_max towards sigma_min, ``num_steps`` of them),
as the official ``DAPS.sample`` (zhangbingliang2019/DAPS, sampler.py, cores/mcmc.py, cores/scheduler.py):

    1. x0_hat  = Euler solution, without autograd graph, of the probability-flow ODE
                 dx / dsigma = (x - D(x; sigma)) / sigma from x_i at sigma_i down to ``ode_sigma_min`` over
                 ``ode_steps`` poly-rho steps;
    2. x0_y    = ``mcmc_steps`` MCMC steps from x0_hat with the score
                 g(x) = -grad_x ||y - A(x)||^2 / tau^2 + (x0_hat - x) / sigma_i^2,
                 Langevin:  x <- x + lr_i g + sqrt(2 lr_i) z;
                 HMC:       v <- m v + sqrt(lr_i) g + sqrt(2 (1 - m)) z,  x <- x + sqrt(lr_i) v  (v_0 ~ N(0, I)),
                 lr_i = lr (1 + i / (N + 1) (lr_min_ratio - 1));
    3. x_{i+1} = x0_y + sigma_{i+1} z        (sigma_N = 0: the last step returns x0_y).

Quirks of the official code kept, so that its per-task settings carry over: the data term is the gradient of
||y - A(x)||^2 without the 1/2, so the likelihood the MCMC targets is N(A(x), tau^2 / 2) (tau = 0.01 in every
official task, whatever the measurement noise); the learning-rate ratio divides by N + 1; the grid has N + 1
poly-rho levels of which the last (sigma_min itself) is replaced by 0. Not kept: the official MCMC returns zeros
when an iterate becomes NaN; here that raises ``DivergenceError``. Its global RNG is replaced by one generator per
image (batch-size invariant).

PAG: the prior enters DAPS only through the ODE. Its intermediate Euler steps are the sampler's moves along the
prior and use eps_guided; the last Euler step, the jump from the lowest ODE level to ``ode_sigma_min`` (~ the
Tweedie estimate x0_hat that anchors the MCMC), uses eps (unguided) with ``pag.x0_from="unguided"``
(the paper's rule that the data term sees the unguided x0_hat; no perturbed pass runs there) and eps_guided with
``"guided"``. With one ODE step the unguided choice therefore disables PAG.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import KW_ONLY, dataclass, field

import torch
from torch import Tensor

from operators import Operator
from operators.random import randn
from priors import EDMDenoiser, LatentPrior, Prior

from .chain import ChainSolver, StepContext
from .guidance import PAG, NoisePredictor

MC_ALGOS = ("langevin", "hmc")


def poly_sigmas(sigma_max: float, sigma_min: float, num_steps: int, rho: float = 7.0) -> Tensor:
    """EDM's grid (its eq. 5): num_steps + 1 levels (a + r (b - a))^rho, a = sigma_max^(1/rho), b = sigma_min^(1/rho),
    r = 0, 1/num_steps, ..., 1 (float64, decreasing, both ends included)."""
    r = torch.linspace(0, 1, num_steps + 1, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + r * (b - a)) ** rho


@dataclass(eq=False)
class DAPS(ChainSolver):
    """DAPS posterior sampler over a pixel-space prior (official DAPS-1K defaults: 200 annealing x 5 ODE steps,
    100 Langevin steps). ``operator=None`` skips the MCMC (x0_y = x0_hat): the prior's annealed ODE sampler.

    Args:
        prior: a pixel-space prior.
        operator: the measurement operator A (None: unconditional sampling).
        lr: MCMC step size at the first annealing step; ``lr_min_ratio``: its ratio at the last.
        tau: the data term's scale (the official 0.01; the likelihood is N(A(x), tau^2 / 2), see module doc).
        num_steps: annealing steps N; ode_steps: Euler steps of each inner ODE; mcmc_steps: MCMC steps per annealing.
        sigma_max / sigma_min / ode_sigma_min / rho: the EDM grids (annealing from sigma_max, ODEs down to
            ode_sigma_min, both poly-rho).
        mc_algo: "langevin" (pixel default) or "hmc" (damped HMC, ``momentum``; the official latent setting).
        grad_clip: clamp the data gradient elementwise to [-c, c] before dividing by tau^2 (None: off).
        reference: start as the official sampler (``sampler.py``: x_T = sigma_max z, z ~ N(0, I), here sigma_0 z at
            the first level of our grid), not at sqrt(1 + sigma_0^2) z, the VP start N(0, I) in EDM scaling.
        pag: Perturbed-Attention Guidance (where it enters: module doc), or None.
        cond: class labels for class-conditional ADMs.
        progress: show a tqdm bar over the annealing steps.
    """

    stochastic = False  # a step draws its own noise (MCMC, re-noising) from ctx.generators
    latent = False

    prior: Prior = field(repr=False)
    operator: Operator | None = field(default=None, repr=False)
    lr: float = 1e-4
    tau: float = 0.01
    _: KW_ONLY
    num_steps: int = 200
    ode_steps: int = 5
    mcmc_steps: int = 100
    lr_min_ratio: float = 0.01
    sigma_max: float = 100.0
    sigma_min: float = 0.1
    ode_sigma_min: float = 0.01
    rho: float = 7.0
    mc_algo: str = "langevin"
    momentum: float = 0.9
    grad_clip: float | None = None
    reference: bool = False
    pag: PAG | None = None
    cond: object | None = field(default=None, repr=False)
    progress: bool = True

    def __post_init__(self) -> None:
        self._check_prior(self.prior)
        if self.mc_algo not in MC_ALGOS:
            raise ValueError(f"mc_algo must be one of {MC_ALGOS}, got {self.mc_algo!r}")
        if min(self.num_steps, self.mcmc_steps) < 1 or self.ode_steps < 1:
            raise ValueError("num_steps, ode_steps and mcmc_steps must be >= 1")
        if not self.sigma_max > self.sigma_min > 0 or self.ode_sigma_min <= 0:
            raise ValueError("need sigma_max > sigma_min > 0 and ode_sigma_min > 0")
        self.lr, self.tau, self.lr_min_ratio = float(self.lr), float(self.tau), float(self.lr_min_ratio)
        self.num_steps, self.ode_steps, self.mcmc_steps = int(self.num_steps), int(self.ode_steps), int(self.mcmc_steps)
        self.momentum = float(self.momentum)
        self.denoiser = EDMDenoiser(self.prior.schedule)
        # the official grid: N + 1 poly-rho levels, the last replaced by 0 (sigma_min itself is never used)
        levels = poly_sigmas(self.sigma_max, self.sigma_min, self.num_steps, self.rho)[:-1]
        self.timesteps = [self.denoiser.snap(s[None])[0] for s in levels]  # t_i of each annealing level
        self.sigmas = [self.denoiser.sigma(t) for t in self.timesteps] + [0.0]

    def _check_prior(self, prior: Prior) -> None:
        if prior.is_latent:
            raise ValueError("DAPS runs on pixel-space priors; use LatentDAPS (solver latent_daps) for latent priors")

    def start(self, x_T: Tensor) -> Tensor:
        """x_T ~ N(0, I) is the VP start; x_T sqrt(1 + sigma_0^2) is the same point in EDM scaling. ``reference``:
        sigma_0 x_T, the official sampler's start (its N(0, sigma_max^2 I) prior without the data's unit variance)."""
        return x_T * (self.sigmas[0] if self.reference else math.sqrt(1 + self.sigmas[0] ** 2))

    # -- the three parts of one annealing step ----------------------------------------------------------------------
    def ode_timesteps(self, i: int) -> list[int]:
        """Training timesteps of the Euler grid of annealing step i (from t_i down; repeats dropped)."""
        grid = poly_sigmas(self.sigmas[i], self.ode_sigma_min, self.ode_steps, self.rho)
        return self.denoiser.snap(grid)

    def reverse_ode(self, predict: NoisePredictor, x: Tensor, i: int) -> Tensor:
        """x0_hat: the Euler solution of the PF-ODE from x at sigma_i to ode_sigma_min (no graph)."""
        edm = self.denoiser
        steps = self.ode_timesteps(i)
        last_guided = self.pag is not None and self.pag.x0_from == "guided"
        with torch.no_grad():
            for k, (t, t_next) in enumerate(itertools.pairwise(steps)):
                guide = k < len(steps) - 2 or last_guided  # the jump to x0_hat: unguided unless x0_from="guided"
                sigma, sigma_next = edm.sigma(t), edm.sigma(t_next)
                denoised = edm.denoise(x, sigma, predict(edm.vp_input(x, sigma), t, guide=guide).eps_guided)
                x = x + (sigma_next - sigma) / sigma * (x - denoised)
        return x

    def to_image(self, x0: Tensor) -> Tensor:
        """Where the operator applies: the identity here, the decoder in LatentDAPS."""
        return x0

    def data_gradient(self, x0: Tensor, y: Tensor) -> Tensor:
        """grad_x ||y - A(x)||^2 per sample (the official loss: squared, no 1/2), clamped by ``grad_clip``."""
        with torch.enable_grad():
            x = x0.detach().requires_grad_(True)
            loss = (self.operator(self.to_image(x)) - y).pow(2).sum()
            grad = torch.autograd.grad(loss, x)[0]
        return grad.clamp(-self.grad_clip, self.grad_clip) if self.grad_clip is not None else grad

    def step_size(self, i: int) -> float:
        """lr_i = lr (1 + i / (N + 1) (lr_min_ratio - 1)) (the official ratio divides by N + 1)."""
        return self.lr * (1 + i / (self.num_steps + 1) * (self.lr_min_ratio - 1))

    def mcmc(self, x0_hat: Tensor, y: Tensor, i: int, generators: list[torch.Generator]) -> Tensor:
        """x0_y: ``mcmc_steps`` Langevin / HMC steps from x0_hat on p(x0 | x_i, y) ~ exp(-||y - A x0||^2 / tau^2
        - ||x0 - x0_hat||^2 / (2 sigma_i^2))."""
        lr, sigma = self.step_size(i), self.sigmas[i]

        def noise() -> Tensor:
            return randn(x0_hat.shape, generators, device=x0_hat.device, dtype=x0_hat.dtype)

        x = x0_hat.detach().clone()
        velocity = noise() if self.mc_algo == "hmc" else None
        for _ in range(self.mcmc_steps):
            score = self.data_gradient(x, y) * (-1 / self.tau**2) + (x0_hat - x) * (1 / sigma**2)
            z = noise()
            if velocity is None:
                x = x + lr * score + math.sqrt(2 * lr) * z
            else:
                velocity = self.momentum * velocity + math.sqrt(lr) * score + math.sqrt(2 * (1 - self.momentum)) * z
                x = x + math.sqrt(lr) * velocity
        return x

    def step(self, ctx: StepContext, i: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """One annealing step from x_i (EDM scaling, noise level sigma_i): returns (x_{i+1}, x0_hat), detached."""
        x0_hat = self.reverse_ode(ctx.predict, x.detach(), i)
        x0_y = x0_hat if ctx.y is None or self.operator is None else self.mcmc(x0_hat, ctx.y, i, ctx.generators)
        sigma_next = self.sigmas[i + 1]
        if sigma_next > 0:
            x0_y = x0_y + sigma_next * ctx.randn(x0_y)
        return x0_y.detach(), x0_hat

    @property
    def nfe(self) -> int:
        """Network evaluations per image without PAG (snapping may drop some Euler steps)."""
        return sum(len(self.ode_timesteps(i)) - 1 for i in range(self.num_steps))


@dataclass(eq=False)
class LatentDAPS(DAPS):
    """DAPS in the latent space of a latent prior (the official ``LatentDAPS``): the ODE runs on latents, the MCMC
    moves latents through the decoder (gradient of ||y - A(D(z))||^2, clamped to [-1, 1] as the official code),
    and the final latent is decoded; ``x_T`` and the callback's tensors are latents. Defaults (below: what differs
    from DAPS): the official SD setting (50 annealing x 2 ODE steps, sigma_max 10, ode_sigma_min 0.001, HMC); the
    official SD tasks measure with noise sigma 0.01.

    prompt / cfg_scale: classifier-free guidance only with a prompt (default: empty prompt, no CFG pass; the
    official SD model runs CFG 7.5 with "a natural looking image").
    """

    latent = True

    prior: LatentPrior = field(repr=False)
    _: KW_ONLY
    num_steps: int = 50
    ode_steps: int = 2
    mcmc_steps: int = 30
    lr_min_ratio: float = 1.0
    sigma_max: float = 10.0
    ode_sigma_min: float = 0.001
    mc_algo: str = "hmc"
    momentum: float = 0.45
    grad_clip: float | None = 1.0
    cond: object | None = field(default=None, init=False, repr=False)  # from the prompt
    prompt: str = ""
    cfg_scale: float = 7.5

    def __post_init__(self) -> None:
        super().__post_init__()
        cfg_scale, self.cfg_scale = self.cfg_scale, 1.0
        if self.prompt:
            self.cond, self.uncond = self.prior.prompt_embedding(self.prompt), self.prior.prompt_embedding("")
            self.cfg_scale = float(cfg_scale)

    def _check_prior(self, prior: Prior) -> None:
        if not prior.is_latent:
            raise ValueError(
                "LatentDAPS runs on latent priors (with encode/decode); use DAPS (solver daps) for pixel priors"
            )

    def to_image(self, z0: Tensor) -> Tensor:
        return self.prior.decode(z0)
