"""DDNM / DDNM+: Denoising Diffusion Null-space Model (Wang et al., ICLR 2023), with PAG.

Per step from t to t' (official code wyhuai/DDNM ``functions/svd_ddnm.py``, ``ddnm_diffusion`` /
``ddnm_plus_diffusion``; ``guided_diffusion/diffusion.py``, ``simplified_ddnm_plus``):
    eps, eps_guided = NoisePredictor(x_t, t)
    x0_hat   = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)                         (eq. 12; not clamped, as there)
    x0_y     = x0_hat - lambda_t A^+ (A x0_hat - y)       (eq. 17; lambda_t = 1: A^+ y + (I - A^+ A) x0_hat)
    x_{t'}   = sqrt(abar_t') x0_y + gamma_t (eta z + sqrt(1 - eta^2) eps)            (DDIM-like step, eq. 51)
with gamma_t = sigma_t = sqrt(1 - abar_t') and lambda_t = 1 for noiseless measurements (DDNM). DDNM+ (sigma_y > 0,
eq. 19, the scalar form of ``simplified_ddnm_plus``): with a_t = sqrt(abar_t'),
    sigma_t >= a_t sigma_y:  lambda_t = 1,                          gamma_t = sqrt(sigma_t^2 - a_t^2 sigma_y^2)
    otherwise:               lambda_t = sigma_t / (a_t sigma_y),    gamma_t = 0
Time-travel (DDNM+ section 3.3, RePaint's ``get_schedule_jump`` as in the official code): every ``travel_length``
steps, ``travel_repeat - 1`` times, the chain jumps back ``travel_length`` steps by re-noising the last step's raw
prediction x0 (not x0_y: the official ``x0_preds``) to that level and samples those steps again.

Where PAG enters (the PAG paper's rule: the sampler's step on the guided prediction, data consistency on the
unguided one): the range-null-space correction acts on x0_hat of the *unguided* eps; the sampler's step uses the
guided prediction: its null-space part, x0_y + (I - A^+ A)(x0_guided - x0_hat), and eps_guided in the re-noising
direction; the time-travel re-noises x0_guided (the sampler's own prediction). The shift is projected onto the
null space so that A x0_y = y (noiseless) still holds exactly: PAG changes only what the measurement leaves
undetermined. ``PAG(x0_from="guided")`` corrects x0_guided itself; since the noiseless correction is an affine
projection, that equals the default up to rounding, and the two differ only where DDNM+ shrinks (lambda_t < 1).

Deliberate differences from the official code:
- ``simplified_ddnm_plus`` computes sigma_t = sqrt(1 - abar_t'^2) and scales the noise by gamma_t on top of
  sqrt(1 - abar_t') (c1, c2); we use sigma_t = sqrt(1 - abar_t') once, as ``ddnm_diffusion`` and the paper do.
- DDNM+'s scalar lambda_t, gamma_t assume A^+ has unit singular values (exact for inpainting); the official SVD
  path applies them per singular value, which needs an SVD of A that our operators do not offer.
- A^+ suppresses the singular values below ``pinv_rcond`` (3e-2) times the largest: the official ``Deblurring``
  zeroes each axis's 1D singular values below 3e-2 (its kernels sum to 1, so the largest is ~1); our blur
  (reflect-padded, no SVD) filters them as (A^T A + (3e-2 s_max)^2 I)^{-1} A^T instead (``Blur.pinv``).
- A time-travel of length L re-noises once (the official draws L times and keeps the last, which is the same
  distribution): a run uses one more draw per jump, not L.
- sigma_y is on the [-1, 1] scale of our operators (the official ``args.sigma_y`` is on [0, 1] and doubled).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import KW_ONLY, dataclass, field

import torch
from torch import Tensor

from operators import Operator
from priors import DiffusionPrior, VPDenoiser
from priors.schedule import SamplingSchedule

from .chain import ChainSolver, StepContext
from .guidance import PAG


def travel_schedule(num_steps: int, travel_length: int, travel_repeat: int) -> list[tuple[int, int]]:
    """The official time-travel schedule (RePaint's ``get_schedule_jump``): step indices ``num_steps - 1 .. -1``
    with jumps back, as the chain's steps (index the step starts from, index it jumps back to after it or -1)."""
    jumps = {j: travel_repeat - 1 for j in range(0, num_steps - travel_length, travel_length)}
    times, t = [], num_steps
    while t >= 1:
        t -= 1
        times.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(travel_length):
                t += 1
                times.append(t)
    times.append(-1)
    steps: list[list[int]] = []
    for a, b in itertools.pairwise(times):
        if b < a:  # a denoising step from a to a - 1
            steps.append([a, -1])
        else:  # a travel pair: only where the last one lands matters (each re-noises the same x0)
            steps[-1][1] = b
    return [(a, back) for a, back in steps]


def ddnm_plus_coefficients(abar_next: float, sigma_y: float) -> tuple[float, float]:
    """(lambda_t, gamma_t) of DDNM+ (paper eq. 19, scalar form) for a step to abar_t' = ``abar_next``."""
    sigma_t, a_t = math.sqrt(1 - abar_next), math.sqrt(abar_next)
    if sigma_t >= a_t * sigma_y:
        return 1.0, math.sqrt(sigma_t**2 - (a_t * sigma_y) ** 2)
    return sigma_t / (a_t * sigma_y), 0.0


@dataclass(eq=False)
class DDNM(ChainSolver):
    """DDNM (noiseless) / DDNM+ (noise-aware, time-travel) over a pixel-space prior (see the module docstring).

    Args:
        prior: a pixel-space prior.
        operator: a linear measurement operator A with its pseudo-inverse ``pinv``.
        eta: share of fresh noise in the re-noising (eta z + sqrt(1 - eta^2) eps); the official default 0.85.
        num_steps: sampling steps (the official T_sampling, timesteps k (1000 // T_sampling), k = T_sampling-1 .. 0).
        pag: Perturbed-Attention Guidance, or None.
        sigma_y: measurement noise std on [-1, 1] for DDNM+'s scaling; None: the operator's Gaussian sigma; 0: DDNM.
        travel_length, travel_repeat: time-travel (l, r of the paper, section 3.3); r = 1: none (the default).
        pinv_rcond: A^+ suppresses the singular values below ``pinv_rcond`` times the largest
            (``Operator.pinv(rcond=)``: truncated where the operator has the SVD, Tikhonov-filtered for the blur);
            None: the exact A^+. Default
            3e-2: the official code's SVD operators (DDRM's ``functions/svd_operators.py``, class ``Deblurring``:
            ``ZERO = 3e-2``) zero the blur's singular values below it; a blur's exact A^+ amplifies the measurement
            noise on the near-zero ones without bound. Inpainting's and SR's singular values are all far above it.
        pinv_max_iter, pinv_tol: bounds of A^+ where the operator computes it iteratively (closed forms ignore them).
        cond: class labels for class-conditional ADMs.
        progress: show a tqdm bar over the steps.
    """

    requires_measurement = True

    prior: DiffusionPrior = field(repr=False)
    operator: Operator = field(repr=False)
    eta: float = 0.85
    _: KW_ONLY
    num_steps: int = 100
    pag: PAG | None = None
    sigma_y: float | None = None
    travel_length: int = 1
    travel_repeat: int = 1
    pinv_rcond: float | None = 3e-2
    pinv_max_iter: int = 200
    pinv_tol: float = 1e-10
    cond: object | None = field(default=None, repr=False)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.prior.is_latent:
            raise ValueError("DDNM runs on pixel-space priors")
        if self.operator is None or not self.operator.is_linear:
            raise ValueError("DDNM needs a linear measurement operator with a pseudo-inverse (operator.pinv)")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if self.pinv_rcond is not None and not 0.0 < self.pinv_rcond < 1.0:
            raise ValueError(f"pinv_rcond must be in (0, 1) or None, got {self.pinv_rcond}")
        if self.travel_length < 1 or self.travel_repeat < 1:
            raise ValueError("travel_length and travel_repeat must be >= 1")
        self.eta = float(self.eta)
        if self.sigma_y is None:
            sigma = self.operator.noise_sigma
            if sigma is None:
                raise ValueError(f"DDNM+ needs a Gaussian noise level; {type(self.operator.noise).__name__}: sigma_y=")
            self.sigma_y = float(sigma)
        T = self.prior.schedule.num_train_timesteps
        skip = T // int(self.num_steps)
        if skip < 1:
            raise ValueError(f"num_steps must be <= {T}, got {self.num_steps}")
        abar = self.prior.schedule.alphas_cumprod
        steps = travel_schedule(int(self.num_steps), self.travel_length, self.travel_repeat)
        self.timesteps = [k * skip for k, _ in steps]
        #: per chain step: the timestep the time-travel jumps back to after it (None: no jump)
        self.travel_to = [back * skip if back >= 0 else None for _, back in steps]
        abar_next = [float(abar[(k - 1) * skip]) if k > 0 else 1.0 for k, _ in steps]
        self.schedule = SamplingSchedule(
            torch.tensor(self.timesteps, dtype=torch.long),
            abar[self.timesteps],
            torch.tensor(abar_next, dtype=torch.float64),
        )
        self.denoiser = VPDenoiser(self.schedule)

    def pinv(self, y: Tensor) -> Tensor:
        return self.operator.pinv(y, max_iter=self.pinv_max_iter, tol=self.pinv_tol, rcond=self.pinv_rcond)

    def step(self, ctx: StepContext, i: int, x_t: Tensor) -> tuple[Tensor, Tensor]:
        """One DDNM(+) step (and its time-travel jump, if one follows): returns (x_next, x0_hat).

        The range-null-space correction sees x0_hat of the unguided prediction (``pag.x0_from="guided"``: of the
        guided one); the guided prediction moves the null-space part and the re-noising (module docstring)."""
        A, x0_of = self.operator, self.denoiser.x0
        with torch.no_grad():
            pred = ctx.predict(x_t, self.timesteps[i])
            x0_hat = x0_of(i, x_t, pred.eps_data)
            abar_next = float(self.schedule.alphas_cumprod_prev[i])
            lambda_t, gamma_t = ddnm_plus_coefficients(abar_next, self.sigma_y)
            x0_y = x0_hat - lambda_t * self.pinv(A(x0_hat) - ctx.y)  # eq. 17: the range-null-space correction
            x0_step = x0_hat
            if pred.guided:  # PAG moves what the measurement leaves free: the shift projected onto null(A)
                x0_step = x0_of(i, x_t, pred.eps_guided)
                shift = x0_step - x0_hat
                x0_y = x0_y + shift - self.pinv(A(shift))
            direction = self.eta * ctx.noise + math.sqrt(1 - self.eta**2) * pred.eps_guided
            x_next = math.sqrt(abar_next) * x0_y + gamma_t * direction
            back = self.travel_to[i]
            if back is not None:  # time-travel: re-noise the raw prediction to the level it jumps back to
                abar_back = float(self.prior.schedule.alphas_cumprod[back])
                x_next = math.sqrt(abar_back) * x0_step + math.sqrt(1 - abar_back) * ctx.randn(x0_step)
        return x_next, x0_hat
