"""PiGDM: Pseudoinverse-Guided Diffusion Models (Song et al., ICLR 2023), with PAG.

Per step from t to s (official implementation NVlabs/RED-diff ``algos/pgdm.py``, its defaults ``awd: True``,
``eta: 0``, ``grad_term_weight: 1``; timesteps range(0, 1000, 1000 // num_steps) as ``utils/functions.py``):
    eps, eps_guided = NoisePredictor(x_t, t)                          (x_t requires grad)
    x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)             (not clamped, as there)
    v      = A^+ y - A^+ A x0_hat                                    (noiseless: the official ``mat``)
           = r_t^2 A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat)   (noisy, paper eq. 8, r_t^2 = 1 - abar_t)
    g      = (d x0_hat / d x_t)^T v                                  (one vector-Jacobian product; v held fixed)
    c1     = eta sqrt((1 - abar_t / abar_s)(1 - abar_s) / (1 - abar_t)),   c2 = sqrt(1 - abar_s - c1^2)
    x_s    = sqrt(abar_s) x0_hat + c1 z + c2 eps + w sqrt(abar_s) sqrt(abar_t) g

The noisy form is scaled by r_t^2 (the paper's g has 1 / r_t^2 in front of A^+ in the limit) so that sigma_y -> 0
gives the official noiseless ``mat`` exactly; its solve is the operator's ``solve_gram`` (closed form for
inpainting, conjugate gradients otherwise).

Where PAG enters (the PAG paper's rule): the vector-Jacobian product differentiates x0_hat of the *unguided* eps
(``PAG(x0_from="guided")``: of eps_guided, so the perturbed pass's Jacobian enters g); the DDIM step's x0 and eps
are the guided prediction's.

Deliberate differences from the official code:
- x_T ~ N(0, I); the official ``initialize`` starts from sqrt(abar_T) A^+ y + sqrt(1 - abar_T) z (weight 0.006 on
  A^+ y at t = 980 with 50 steps).
- ``awd: False`` / ``cond_awd`` / ``mcg`` and the HDR and ``in2`` special cases are not offered.
- sigma_y is on the [-1, 1] scale of our operators.
- num_steps steps at timesteps k (1000 // num_steps), k < num_steps; the official range(0, 1000, 1000 // num_steps)
  is the same where num_steps divides 1000 and one step longer where it does not.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field

import torch
from torch import Tensor

from operators import Operator
from priors import DiffusionPrior, VPDenoiser

from .chain import ChainSolver, StepContext
from .guidance import PAG


@dataclass(eq=False)
class PiGDM(ChainSolver):
    """PiGDM over a pixel-space prior (see the module docstring).

    Args:
        prior: a pixel-space prior.
        operator: a linear measurement operator A with its pseudo-inverse ``pinv`` (and ``solve_gram`` if noisy).
        weight: w, the guidance weight (the official ``grad_term_weight``).
        eta: DDIM's eta (0: deterministic, the official default).
        num_steps: DDIM steps over range(0, 1000, 1000 // num_steps).
        pag: Perturbed-Attention Guidance, or None.
        sigma_y: measurement noise std on [-1, 1]; None: the operator's Gaussian sigma; 0: the noiseless form.
        solve_max_iter, solve_tol: bounds of A^+ / the Gram solve where the operator computes them iteratively.
        cond: class labels for class-conditional ADMs.
        progress: show a tqdm bar over the steps.
    """

    requires_measurement = True

    prior: DiffusionPrior = field(repr=False)
    operator: Operator = field(repr=False)
    weight: float = 1.0
    _: KW_ONLY
    eta: float = 0.0
    num_steps: int = 50
    pag: PAG | None = None
    sigma_y: float | None = None
    solve_max_iter: int = 200
    solve_tol: float = 1e-10
    cond: object | None = field(default=None, repr=False)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.prior.is_latent:
            raise ValueError("PiGDM runs on pixel-space priors")
        if self.operator is None or not self.operator.is_linear:
            raise ValueError("PiGDM needs a linear measurement operator with a pseudo-inverse (operator.pinv)")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        self.weight, self.eta = float(self.weight), float(self.eta)
        if self.sigma_y is None:
            sigma = self.operator.noise_sigma
            if sigma is None:
                raise ValueError(f"PiGDM needs a Gaussian noise level; {type(self.operator.noise).__name__}: sigma_y=")
            self.sigma_y = float(sigma)
        T = self.prior.schedule.num_train_timesteps
        if not 1 <= self.num_steps <= T:
            raise ValueError(f"num_steps must be in [1, {T}], got {self.num_steps}")
        self.schedule = self.prior.schedule.sampling(self.prior.schedule.timesteps(self.num_steps, spacing="leading"))
        self.timesteps = self.schedule.timesteps.tolist()
        self.denoiser = VPDenoiser(self.schedule)

    def guidance_vector(self, y: Tensor, x0_hat: Tensor, abar_t: float) -> Tensor:
        """v = A^+ (y - A x0_hat) (noiseless) or r_t^2 A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat)."""
        A, bounds = self.operator, {"max_iter": self.solve_max_iter, "tol": self.solve_tol}
        if self.sigma_y == 0:
            return A.pinv(y, **bounds) - A.pinv(A(x0_hat), **bounds)
        r2 = 1 - abar_t
        return r2 * A.adjoint(A.solve_gram(y - A(x0_hat), r2, self.sigma_y**2, **bounds))

    def step(self, ctx: StepContext, i: int, x_t: Tensor) -> tuple[Tensor, Tensor]:
        """One PiGDM step: returns (x_s, x0_hat), both detached.

        The vector-Jacobian product differentiates x0_hat of the unguided prediction (``pag.x0_from="guided"``:
        of the guided one); the DDIM step uses the guided prediction (module docstring)."""
        x0_of = self.denoiser.x0
        abar_t, abar_s = float(self.schedule.alphas_cumprod[i]), float(self.schedule.alphas_cumprod_prev[i])
        with torch.enable_grad():
            x_t = x_t.detach().requires_grad_(True)
            pred = ctx.predict(x_t, self.timesteps[i])
            x0_hat = x0_of(i, x_t, pred.eps_data)
            v = self.guidance_vector(ctx.y, x0_hat.detach(), abar_t)
            g = torch.autograd.grad((v * x0_hat).sum(), x_t)[0]
        with torch.no_grad():
            eps_step = pred.eps_guided.detach()
            x0_step = x0_of(i, x_t, eps_step) if pred.guided else x0_hat.detach()
            c1 = self.eta * math.sqrt((1 - abar_t / abar_s) * (1 - abar_s) / (1 - abar_t))
            c2 = math.sqrt(1 - abar_s - c1**2)
            coeff = self.weight * math.sqrt(abar_s) * math.sqrt(abar_t)
            x_s = math.sqrt(abar_s) * x0_step + c1 * ctx.noise + c2 * eps_step + coeff * g
        return x_s.detach(), x0_hat.detach()
