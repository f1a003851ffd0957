#!/usr/bin/env python
"""What PAG costs: seconds per solver step and peak memory, measured side by side in one run.

    python scripts/benchmark.py                          # tiny models, CPU: a minute
    python scripts/benchmark.py --suite real --repeats 3 # + FFHQ-ADM at 256 px and an SD1.5-shaped PSLD step
    python scripts/benchmark.py --device cuda --suite real --json results.json

For each model it times one full solver step (prior passes, sampler update, data-consistency gradient) for
  bare       the DPS/PSLD update written directly against the network (no guidance machinery at all)
  none       our solver with PAG off                              -> no regression when PAG is off
  naive      PAG with both passes building autograd graphs        (the PSLD_PAG reference's approach)
  no_grad    PAG with the perturbed pass under torch.no_grad
  shared     PAG with no graph and the prefix before the first perturbed layer reused (our default)
  cfg+pag    a prompt with CFG and PAG (latent priors only: three UNet passes)
and, for PSLD, the memory levers (gradient checkpointing, bf16 autocast). Every configuration runs in its
own subprocess, so its peak memory (CUDA: max allocated; CPU: peak RSS above the loaded model) is its own.
Real-size models use random weights: the cost depends on the architecture, not on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch


@dataclass
class Case:
    model: str  # tiny_adm | ffhq_adm | tiny_sd | sd15_shaped
    mode: str  # bare | none | naive | no_grad | shared | cfg+pag
    lever: str = ""  # "" | checkpointing | bf16


@dataclass
class Result:
    model: str
    mode: str
    lever: str
    seconds: list[float]
    peak_mb: float

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# -- the models -------------------------------------------------------------------------------------
ADM_MODELS = {"tiny_adm": ("tiny", ("input_blocks.3.1",)), "ffhq_adm": ("ffhq_256", ("input_blocks.9.1",))}
SD_MODELS = {"tiny_sd": 32, "sd15_shaped": 256}  # pixel size of the PSLD problem
SD_LAYER = "input_blocks.8.1.transformer_blocks.0.attn1"


def build_dps(case: Case, device: str):
    from operators import make_operator
    from operators.random import generators_from_seeds
    from priors.adm import ADMPrior
    from solvers import DPS, PAG

    preset, layers = ADM_MODELS[case.model]
    prior = ADMPrior.from_preset(preset, init="random", generator=torch.Generator().manual_seed(0))
    prior = prior.to(device).eval().requires_grad_(False)
    size = prior.sample_shape[-1]
    op = make_operator("box_inpaint", image_size=size, margin=size // 16, generator=generators_from_seeds([0])).to(
        device
    )
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device) * 2 - 1
    y = op.measure(x, generators_from_seeds([2]))
    modes = {"none": None, "naive": "naive", "no_grad": "no_grad", "shared": "shared_prefix"}
    pag = PAG(2.0, layers, mode=modes[case.mode]) if modes.get(case.mode) else None
    solver = DPS(prior, op, zeta=1.0, num_steps=1000, pag=pag, progress=False)
    return prior, op, y, solver


def dps_bare_step(prior, op, y, solver, i, x_t, noise):
    """The DPS update written straight from the equations against the raw network (the baseline)."""
    sched, net = solver.schedule, prior.network
    t = sched.timesteps[i].to(x_t.device).expand(x_t.shape[0])
    x_t = x_t.detach().requires_grad_(True)
    eps, v = net(x_t, t).chunk(2, dim=1)
    x0_hat = sched.predict_x0(i, x_t, eps).clamp(-1, 1)
    log_var = sched.log_variance(i, x_t, "learned_range", v.detach())
    x_prev = sched.ddpm_step(i, x0_hat.detach(), x_t.detach(), noise, log_var)
    loss = (y - op(x0_hat)).flatten(1).norm(dim=1).sum()
    return x_prev - torch.autograd.grad(loss, x_t)[0]


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


def sd15_shaped_prior(image_size: int, seed: int, **options):
    """SD1.5's UNet and VAE architectures with random weights (no text encoder: a random (1, 77, 768) null
    embedding stands in for CLIP's empty-prompt output)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from priors.sd import StableDiffusionPrior, tiny_scheduler
    from priors.sd.tiny import SD15_UNET_CONFIG

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        vae = AutoencoderKL(**SD15_VAE_CONFIG)
        null = torch.randn(1, 77, 768)
    return StableDiffusionPrior(unet, vae, tiny_scheduler(), image_size=image_size, null_embedding=null, **options)


def build_psld(case: Case, device: str):
    from operators import make_operator
    from operators.random import generators_from_seeds
    from priors.sd import build_tiny_sd_prior
    from solvers import PAG, PSLD

    size = SD_MODELS[case.model]
    options = {"gradient_checkpointing": case.lever == "checkpointing"}
    if case.lever == "bf16":
        options["autocast_dtype"] = torch.bfloat16
    if case.model == "tiny_sd":
        prior = build_tiny_sd_prior(seed=0, image_size=size, **options)
    else:
        prior = sd15_shaped_prior(image_size=size, seed=0, **options)
    prior = prior.to(device)
    op = make_operator("box_inpaint", image_size=size, margin=size // 16, generator=generators_from_seeds([0])).to(
        device
    )
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device) * 2 - 1
    y = op.measure(x, generators_from_seeds([2]))
    modes = {
        "none": None,
        "naive": "naive",
        "no_grad": "no_grad",
        "shared": "shared_prefix",
        "cfg+pag": "shared_prefix",
    }
    pag = PAG(2.0, (SD_LAYER,), mode=modes[case.mode]) if modes.get(case.mode) else None
    solver = PSLD(prior, op, omega=1.0, gamma=0.1, num_steps=1000, pag=pag, progress=False)
    if case.mode == "cfg+pag":  # a prompt's embedding: any tensor of the right shape costs the same
        null = prior.null_embedding
        solver.cond = torch.randn(null.shape, generator=torch.Generator().manual_seed(4)).to(null)
        solver.uncond, solver.cfg_scale = null, 7.5
    return prior, op, y, solver


def psld_bare_step(prior, op, y, solver, i, z_t, noise):
    """The PSLD update straight from the equations against the raw UNet / VAE (the baseline)."""
    sched = solver.schedule
    t = int(sched.timesteps[i])
    z_t = z_t.detach().requires_grad_(True)
    eps = prior(z_t, t).eps
    z0_hat = sched.predict_x0(i, z_t, eps)
    z_prev = sched.ddim_step(i, z0_hat.detach(), eps.detach())
    x0 = prior.decode(z0_hat)
    meas = (y - op(x0)).flatten(1).norm(dim=1)
    glued = op.transpose(y) + x0 - op.transpose(op(x0))
    glue = (prior.encode(glued) - z0_hat).flatten(1).norm(dim=1)
    loss = (solver.omega * meas + solver.gamma * glue).sum()
    return z_prev - torch.autograd.grad(loss, z_t)[0]


# -- the worker: one case, its own process ------------------------------------------------------------
def peak_memory_mb(device: str, rss_start_kb: int) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_start_kb) / 1024


def run_case(case: Case, device: str, warmup: int, repeats: int, threads: int) -> Result:
    from solvers import NoisePredictor

    if threads:
        torch.set_num_threads(threads)
    is_dps = case.model in ADM_MODELS
    prior, op, y, solver = (build_dps if is_dps else build_psld)(case, device)
    generator = torch.Generator().manual_seed(3)
    x_t = torch.randn((1, *prior.sample_shape), generator=generator).to(device)
    noise = torch.randn((1, *prior.sample_shape), generator=generator).to(device)
    i = len(solver.schedule) // 2  # a mid-chain step: PAG is active, nothing special about it
    if is_dps:
        predict = NoisePredictor(prior, solver.pag)
    else:
        predict = NoisePredictor(prior, solver.pag, cond=solver.cond, uncond=solver.uncond, cfg_scale=solver.cfg_scale)

    def step():
        if case.mode == "bare":
            return (dps_bare_step if is_dps else psld_bare_step)(prior, op, y, solver, i, x_t, noise)
        if is_dps:
            return solver.step(predict, i, x_t, y, noise)[0]
        return solver.step(predict, i, x_t, y, None, [generator])[0]

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        seconds.append(time.perf_counter() - start)
    return Result(case.model, case.mode, case.lever, seconds, peak_memory_mb(device, rss_start))


# -- the driver -----------------------------------------------------------------------------------------
def cases_for(suite: str) -> list[Case]:
    dps_models = ["tiny_adm"] + (["ffhq_adm"] if suite == "real" else [])
    sd_models = ["tiny_sd"] + (["sd15_shaped"] if suite == "real" else [])
    cases = [Case(m, mode) for m in dps_models for mode in ("bare", "none", "naive", "no_grad", "shared")]
    for m in sd_models:
        cases += [Case(m, mode) for mode in ("bare", "none", "naive", "no_grad", "shared", "cfg+pag")]
        cases += [Case(m, "none", "checkpointing"), Case(m, "none", "bf16")]
    return cases


def spawn(case: Case, args: argparse.Namespace) -> Result:
    command = [
        sys.executable,
        __file__,
        "--worker",
        json.dumps(asdict(case)),
        "--device",
        args.device,
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark case {case} failed:\n{done.stderr[-3000:]}")
    return Result(**json.loads(done.stdout.strip().splitlines()[-1]))


def table(results: list[Result]) -> str:
    rows = ["| model | mode | lever | s/step (median) | spread (min-max) | x 'none' | peak MB |", "|" + "---|" * 7]
    base = {(r.model, r.lever): r.median for r in results if r.mode == "none"}
    none_plain = {r.model: r.median for r in results if r.mode == "none" and not r.lever}
    for r in results:
        ref = none_plain.get(r.model) or base.get((r.model, r.lever))
        rows.append(
            f"| {r.model} | {r.mode} | {r.lever or '-'} | {r.median:.4f} | {min(r.seconds):.4f}-{max(r.seconds):.4f} "
            f"| {r.median / ref:.2f} | {r.peak_mb:.0f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per worker (0: torch's default)")
    parser.add_argument("--only", default="", help="comma-separated model names to run (default: the suite's)")
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = run_case(Case(**json.loads(args.worker)), args.device, args.warmup, args.repeats, args.threads)
        print(json.dumps(asdict(result)))
        return

    cases = cases_for(args.suite)
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c.model in wanted]
    results = []
    for case in cases:
        print(f"running {case.model} {case.mode} {case.lever}".rstrip(), file=sys.stderr, flush=True)
        results.append(spawn(case, args))
    machine = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
        "warmup": args.warmup,
        "repeats": args.repeats,
    }
    print(f"machine: {machine}\n")
    print(table(results))
    if args.json:
        payload = {"machine": machine, "results": [asdict(r) | {"median": r.median} for r in results]}
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)


if __name__ == "__main__":
    main()
