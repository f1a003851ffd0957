"""What the benchmark measures: its models, its cases (ways of running PAG, memory levers) and one problem per
model and solver (box inpainting, one mid-chain step of the solver: the model's default one, DPS / PSLD, unless
named), on random weights: the cost depends on the architecture, not on the values."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import torch

from operators import make_operator
from operators.random import generators_from_seeds
from priors.adm import ADMPrior
from priors.sd import random_sd_prior
from solvers import PAG, SOLVERS, NoisePredictor, SolverSpec, StepContext, default_solver, solvers_for

ADM_MODELS = {"test_adm": ("test", ("input_blocks.3.1",)), "ffhq_adm": ("ffhq_256", ("input_blocks.9.1",))}
SD_MODELS = {"test_sd": 32, "sd15_shaped": 256}  # image size of the PSLD problem (SD1.5-shaped: 32x32 latents)
SD_LAYER = "input_blocks.8.1.transformer_blocks.0.attn1"
PAG_MODES = {
    "naive": "naive",
    "no_grad": "no_grad",
    "prefix": "prefix_only",
    "shared": "shared_prefix",
    "cfg+pag": "shared_prefix",
}
SD15_VAE_CONFIG = {  # runwayml/stable-diffusion-v1-5 vae/config.json
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}


@dataclass(frozen=True)
class Case:
    mode: str  # bare | none | naive | no_grad | prefix | shared | cfg+pag
    lever: str = ""  # "" | checkpointing | bf16

    @property
    def label(self) -> str:
        return f"{self.mode}+{self.lever}" if self.lever else self.mode


@dataclass
class Result:
    model: str
    mode: str
    lever: str
    malloc: str = "system"
    seconds: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    gflop: float | None = None
    ops: int | None = None  # aten operator calls per step
    solver: str = ""  # the registered solver whose step is measured ("": the model's default, for older files)

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    def ratios(self, base: Result) -> list[float]:
        """Per-round ratios to ``base`` (same round of the round-robin: drifts of the machine cancel)."""
        return [a / b for a, b in zip(self.seconds, base.seconds, strict=True)]


def model_space(model: str) -> str:
    return "pixel" if model in ADM_MODELS else "latent"


def model_solver(model: str, solver: str | None = None) -> str:
    """``solver`` (checked: registered, and for the model's prior space) or the model's default solver (DPS for
    pixel priors, PSLD for latent ones)."""
    space = model_space(model)
    if solver is None:
        return default_solver(space)
    if solver not in SOLVERS or SOLVERS[solver].space != space:
        raise ValueError(f"solver {solver!r} does not run on {model} ({space} priors): {solvers_for(space)}")
    return solver


def solver_spec(model: str, solver: str | None = None) -> SolverSpec:
    """The registry entry of ``solver`` (default: the model's default solver)."""
    return SOLVERS[model_solver(model, solver)]


def cases_for(model: str, device: str = "cpu", solver: str | None = None) -> list[Case]:
    # the bare baseline where the solver declares one (SolverSpec.bare_step)
    bare = ["bare"] if solver_spec(model, solver).bare_step is not None else []
    cases = [Case(m) for m in (*bare, "none", "naive", "no_grad", "prefix", "shared")]
    if model in SD_MODELS:
        cases += [Case("cfg+pag"), Case("none", "checkpointing")]
        # without bf16 instructions, bf16 autocast is emulated: slower than float32 (the test model shows it) and,
        # at SD1.5 size, single-threaded and too slow to time in minutes
        if model == "test_sd" or native_bf16(device):
            cases.append(Case("none", "bf16"))
    return cases


def native_bf16(device: str) -> bool:
    """Whether the device computes in bfloat16 natively (CUDA: Ampere+; CPU: AVX512-BF16 or AMX)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    flags = (cpuinfo("flags") or "").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpuinfo(key: str) -> str | None:
    """The first ``key`` line's value in /proc/cpuinfo (None where there is none, e.g. outside Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def sd15_shaped_prior(image_size: int, seed: int):
    """SD1.5's UNet and VAE architectures with random weights; a random (1, 77, 768) tensor stands in for CLIP's
    empty-prompt embedding (no text encoder is needed to measure the cost)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from priors.sd import StableDiffusionPrior, sd_scheduler
    from priors.sd.testing import SD15_UNET_CONFIG

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        vae = AutoencoderKL(**SD15_VAE_CONFIG)
        null = torch.randn(1, 77, 768)
    return StableDiffusionPrior(unet, vae, sd_scheduler(), image_size=image_size, null_embedding=null)


class Problem:
    """One model, one box-inpainting measurement, one mid-chain step of ``solver`` (default: the model's default
    solver); ``step(case)`` runs that case's step."""

    def __init__(self, model: str, device: str, solver: str | None = None):
        self.model, self.device = model, device
        self.solver_name = model_solver(model, solver)
        self.latent = model not in ADM_MODELS
        if not self.latent:
            preset, self.layers = ADM_MODELS[model]
            prior = ADMPrior.from_preset(preset, init="random", generator=torch.Generator().manual_seed(0))
        else:
            self.layers = (SD_LAYER,)
            size = SD_MODELS[model]
            prior = random_sd_prior(seed=0, image_size=size) if model == "test_sd" else sd15_shaped_prior(size, 0)
        self.prior = prior.to(device).eval().requires_grad_(False)
        self.spec = SOLVERS[self.solver_name]
        size = self.prior.image_size[0] if self.latent else self.prior.sample_shape[-1]
        generator = torch.Generator().manual_seed(1)
        op = make_operator("box_inpaint", image_size=size, margin=size // 16, generator=generators_from_seeds([0]))
        self.op = op.to(device)
        x = torch.rand(1, 3, size, size, generator=generator).to(device) * 2 - 1
        self.y = self.op.measure(x, generators_from_seeds([2]))
        self.x_t = torch.randn((1, *self.prior.sample_shape), generator=generator).to(device)
        self.noise = torch.randn((1, *self.prior.sample_shape), generator=generator).to(device)
        self.generators = [generator]
        self.solvers = {}

    def new_solver(self, pag: PAG | None, num_steps: int):
        # the solver's default step sizes (DPS: zeta = 1; PSLD: omega = 1, gamma = 0.1; ...): the cost does not
        # depend on them
        return self.spec.cls(self.prior, self.op, num_steps=num_steps, pag=pag, progress=False)

    def solver(self, case: Case):
        if case not in self.solvers:
            mode = PAG_MODES.get(case.mode)
            pag = PAG(2.0, self.layers, mode=mode) if mode else None
            solver = self.new_solver(pag, num_steps=1000)
            cond = uncond = None
            if case.mode == "cfg+pag":  # a prompt's embedding: any tensor of the right shape costs the same
                uncond = self.prior.null_embedding
                cond = torch.randn(uncond.shape, generator=torch.Generator().manual_seed(4)).to(uncond)
            predictor = NoisePredictor(self.prior, pag, cond=cond, uncond=uncond, cfg_scale=7.5)
            self.solvers[case] = (solver, predictor)
        return self.solvers[case]

    def set_lever(self, lever: str) -> None:
        """Switch the PSLD memory levers on the one prior (so that every case shares the same weights)."""
        if not self.latent:
            return
        for module in (self.prior.unet, self.prior.vae):
            if lever == "checkpointing":
                module.enable_gradient_checkpointing()
            else:
                module.disable_gradient_checkpointing()
        self.prior.autocast_dtype = self.prior.vae_autocast_dtype = torch.bfloat16 if lever == "bf16" else None

    def step(self, case: Case) -> torch.Tensor:
        solver, predictor = self.solver(case)
        self.set_lever(case.lever)
        i = len(solver.schedule) // 2  # a mid-chain step: PAG is active, nothing special about it
        if case.mode == "bare":
            return self.spec.bare_step(solver, self.x_t, self.y, self.noise, i)
        # PSLD's DDIM step with eta = 0 does not use the noise
        return solver.step(StepContext(predictor, self.y, self.generators, self.noise), i, self.x_t)[0]

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
