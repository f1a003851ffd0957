"""PSLD: Posterior Sampling with Latent Diffusion (Rout et al., NeurIPS 2023), with optional PAG.

Per DDIM step, with z_t requiring grad (Rout et al. 2023; LituRout/PSLD
``stable-diffusion/ldm/models/diffusion/psld.py``, PAG as in Min-Jaewon/PSLD_PAG):
    eps             = unet(z_t, t)                                    (+ eps_perturbed for PAG)
    z0_hat          = (z_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
    z'_{t-1}        = DDIM step (eta = 0 by default) with eps_guided
    x0              = D(z0_hat)
    meas            = || y - A(x0) ||
    glued           = A^T y + (x0 - A^T A x0)          (A^T: the operator's ``transpose``, as in PSLD)
    glue            = || E(glued) - z0_hat ||
    z_{t-1}         = z'_{t-1} - grad_{z_t} (omega meas + gamma glue)

Reference quirks, off by default, each behind a flag for exact reproduction:
``noisy_measurement_loss`` (PSLD adds fresh noise to A(x0) inside the loss), ``stochastic_encoder``
(PSLD encodes with a posterior sample, not the mean), ``empty_prompt_cfg`` (PSLD runs CFG at 7.5 with an
empty prompt: uncond == cond, twice the UNet cost for the same eps).

``reference=True`` turns on every behaviour of PSLD_PAG (Min-Jaewon/PSLD_PAG, stable-diffusion/scripts/inverse.py
and ldm/models/diffusion/psld.py) at once:
- the noisy measurement loss and the stochastic encoder above;
- one norm over the whole batch for both terms (its scripts run one image at a time, so this only matters for
  batches);
- the UNet's timestep at 1000 DDIM steps: LDM's sampler passes t = index + 1 (1000 .. 1) while it reads abar at
  index (its ``make_ddim_sampling_parameters`` subtracts 1 to stay in range); at fewer steps the two agree;
- the data term's x0_hat from the *conditional* eps (``e_t_cond``) whenever PAG or CFG is on, not the
  CFG-combined one (the same without a prompt);
- sampling under fp16 autocast (its ``--precision autocast`` default) on CUDA; on a CPU, which has no fast fp16,
  autocast is left off.
PSLD_PAG runs without CFG (``--cfg_scale`` defaults to 1), so ``empty_prompt_cfg`` stays off. Its pasted box
inpainting outputs and its task settings at 512 px are the runner's (``solver.reference`` there).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import KW_ONLY, dataclass, field

import torch
from torch import Tensor

from operators import Operator
from priors import LatentPrior, VPDenoiser

from .chain import ChainSolver, StepContext
from .common import batch_norm, residual_norm
from .guidance import PAG


def ldm_ddim_timesteps(num_train_timesteps: int, num_steps: int) -> tuple[str, int]:
    """LDM's "uniform" DDIM discretisation: range(0, T, T // n) + 1, offset dropped when it would overflow."""
    stride = num_train_timesteps // num_steps
    offset = 1 if (num_steps - 1) * stride + 1 <= num_train_timesteps - 1 else 0
    return "leading", offset


@dataclass(eq=False)
class PSLD(ChainSolver):
    """PSLD posterior sampler over a latent prior (``encode``/``decode``). ``operator=None``: plain DDIM.

    Args:
        prior: a latent prior (``prior.is_latent``), e.g. ``priors.sd.StableDiffusionPrior``.
        operator: the measurement operator A in pixel space (None: unconditional sampling).
        omega: weight of the measurement term; gamma: weight of the gluing term.
        num_steps: DDIM steps (PSLD's default is 1000); eta: DDIM stochasticity (0 = deterministic).
        pag: Perturbed-Attention Guidance, or None.
        prompt / cfg_scale: optional text prompt with classifier-free guidance (only with a prompt).
        reference: every behaviour of PSLD_PAG at once (module docstring); the quirk flags are then on too.
    """

    prior: LatentPrior = field(repr=False)
    operator: Operator | None = field(default=None, repr=False)
    omega: float = 1.0
    gamma: float = 0.1
    _: KW_ONLY
    num_steps: int = 1000
    eta: float = 0.0
    pag: PAG | None = None
    prompt: str = ""
    cfg_scale: float = 7.5
    noisy_measurement_loss: bool = False
    stochastic_encoder: bool = False
    empty_prompt_cfg: bool = False
    progress: bool = True
    reference: bool = False

    def __post_init__(self) -> None:
        prior = self.prior
        if not prior.is_latent:
            raise ValueError("PSLD runs on latent priors (with encode/decode); use DPS for pixel-space priors")
        self.omega, self.gamma, self.eta = float(self.omega), float(self.gamma), float(self.eta)
        self.noisy_measurement_loss = self.noisy_measurement_loss or self.reference
        self.stochastic_encoder = self.stochastic_encoder or self.reference
        cfg_scale, self.cfg_scale = self.cfg_scale, 1.0
        if self.prompt or self.empty_prompt_cfg:
            # CFG only where a prompt makes cond differ from uncond (or to reproduce PSLD's wasted pass).
            self.cond = prior.prompt_embedding(self.prompt)
            self.uncond = prior.prompt_embedding("")
            self.cfg_scale = float(cfg_scale)
        spacing, offset = ldm_ddim_timesteps(prior.schedule.num_train_timesteps, self.num_steps)
        timesteps = prior.schedule.timesteps(self.num_steps, spacing=spacing, offset=offset)
        # LDM's sampler always gives the UNet range(0, T, T // n) + 1; where that overflows (1000 steps) it reads
        # abar one index lower but keeps the UNet's t: reference mode reproduces that, the default keeps t = index
        self.unet_t_shift = 1 if self.reference and offset == 0 else 0
        # LDM / SD DDIM: the step after the last one lands on abar[0], not on a clean image (abar = 1)
        self.schedule = prior.schedule.sampling(timesteps, final_alpha_cumprod=float(prior.schedule.alphas_cumprod[0]))
        self.timesteps = self.schedule.timesteps.tolist()
        self.denoiser = VPDenoiser(self.schedule)

    @property
    def stochastic(self) -> bool:  # DDIM draws fresh noise only with eta > 0
        return self.eta > 0

    def data_loss(self, z0_hat: Tensor, y: Tensor, generators: list[torch.Generator]) -> Tensor:
        """omega ||y - A(D(z0_hat))|| + gamma ||E(A^T y + x0 - A^T A x0) - z0_hat||, per sample (shape (B,))."""
        A = self.operator
        x0 = self.prior.decode(z0_hat)
        y_hat = A(x0)
        if self.noisy_measurement_loss:
            y_hat = A.noise(y_hat, generators)
        norm = batch_norm if self.reference else residual_norm
        meas = norm(y, y_hat)
        glued = A.transpose(y) + (x0 - A.transpose(A(x0)))
        z_glued = self.prior.encode(glued, sample=self.stochastic_encoder, generator=generators)
        glue = norm(z_glued, z0_hat)
        return self.omega * meas + self.gamma * glue

    def step(self, ctx: StepContext, i: int, z_t: Tensor) -> tuple[Tensor, Tensor]:
        """One PSLD step: returns (z_{t-1}, z0_hat), both detached.

        The guided prediction drives the DDIM step; the measurement and gluing terms see z0_hat of the unguided
        one (``pag.x0_from="guided"``: of the guided one)."""
        y, z0_of = ctx.y, self.denoiser.x0
        data_term = y is not None and self.operator is not None
        with torch.set_grad_enabled(data_term), self.precision(z_t.device):
            z_t = z_t.detach().requires_grad_(data_term)
            pred = ctx.predict(z_t, self.timesteps[i] + self.unet_t_shift)
            eps_data = pred.eps_cond if self.reference else pred.eps_data
            z0_hat = z0_of(i, z_t, eps_data)  # unguided (paper): the data term's estimate
            # unguided steps: eps_guided equals the data eps unless reference mode takes the conditional one
            guided = pred.guided or self.reference
            z0_step = z0_of(i, z_t, pred.eps_guided) if guided else z0_hat
            z_prev = self.schedule.ddim_step(i, z0_step.detach(), pred.eps_guided.detach(), self.eta, ctx.noise)
            if data_term:
                loss = self.data_loss(z0_hat, y, ctx.generators).sum()
                z_prev = z_prev - torch.autograd.grad(loss, z_t)[0]
        return z_prev.detach(), z0_hat.detach()

    def precision(self, device: torch.device):
        """PSLD_PAG's fp16 autocast around the whole step (reference mode, CUDA only), else nothing."""
        if self.reference and device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return nullcontext()
