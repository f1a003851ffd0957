#!/usr/bin/env python
"""What PAG costs: seconds per solver step, FLOPs and peak memory, measured side by side in one run.

    python scripts/benchmark.py                                   # small test models: about a minute on a CPU
    python scripts/benchmark.py --suite real --repeats 3          # + FFHQ-ADM at 256 px, SD1.5-shaped PSLD step
    python scripts/benchmark.py --device cuda --suite real --json results.json
    python scripts/benchmark.py --only ffhq_adm --malloc system,retain     # CPU: glibc's allocator and a caching one
    python scripts/benchmark.py --suite real --repeats 0           # no timing: memory, FLOPs, operator calls
    python scripts/benchmark.py --table docs/results/benchmark_ffhq_adm.json   # the tables of saved results
    python scripts/benchmark.py --interval 0,500 --restore-steps 50     # PAG only for t in [0, 500]: full restorations

For each model it times one full solver step (prior passes, sampler update, data-consistency gradient) for
  bare      the DPS / PSLD update written directly against the network (no guidance machinery at all)
  none      our solver with PAG off                               -> no regression when PAG is off
  naive     PAG with both passes building autograd graphs         (the PSLD_PAG reference's approach)
  no_grad   PAG with the perturbed pass under torch.no_grad
  prefix    PAG with no graph and the prefix before the first perturbed layer reused
  shared    as prefix, and the decoder's skip parts W_s s reused too (priors.SkipBranch; our default)
  cfg+pag   a prompt with CFG and PAG (latent priors only: three UNet passes)
and, for PSLD, the memory levers (UNet + VAE gradient checkpointing, bf16 autocast) with PAG off. bf16 is left out
for real-size models on a device without bf16 instructions (emulated, it is slower than float32).

Timing: all cases of one model run in one process, round-robin (every case once per round, in a new shuffled order
each round), so that drifts of the machine's load hit every case alike; ``x none`` is the median over rounds of
the case's time divided by ``none``'s in the same round. Per case, a fresh process then measures one step's peak
memory above the loaded model (CUDA: max allocated; CPU: the peak resident set, reset through
/proc/self/clear_refs) and its FLOPs (torch's flop formulas for matmuls, convolutions and attention, forward and
backward): the work saved, free of timing noise; and its number of aten operator calls, which is what the step
time of a small model follows (each call has a fixed dispatch cost). Real-size models use random weights: the cost
depends on the architecture, not on the values.

``--malloc retain`` (CPU) starts the workers with glibc told to keep freed memory (MALLOC_MMAP_MAX_=0, a huge
MALLOC_TRIM_THRESHOLD_): by default glibc hands every freed block above 32 MB back to the kernel, so at 256 px each
new activation page-faults afresh, which slows the passes that keep an autograd graph; a caching allocator (CUDA's,
jemalloc, tcmalloc) does not pay this.

``--interval t_lo,t_hi`` measures whole restorations instead (``--restore-steps`` steps, ``--repeats`` rounds,
round-robin): PAG off, PAG on every step, PAG only for t_lo <= t <= t_hi (``pag.interval``), with the number of
network passes each ran (counted with a forward hook) and the time relative to PAG off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

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
# glibc returns every freed block above 32 MB to the kernel, so each new activation of a 256 px network
# page-faults afresh; "retain" keeps freed memory in the heap, as PyTorch's CUDA caching allocator does
# (mallopt(3): M_MMAP_MAX, M_TRIM_THRESHOLD). The workers start with these variables set.
MALLOC_ENV = {"system": {}, "retain": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}}
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

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    def ratios(self, base: Result) -> list[float]:
        """Per-round ratios to ``base`` (same round of the round-robin: drifts of the machine cancel)."""
        return [a / b for a, b in zip(self.seconds, base.seconds, strict=True)]


def cases_for(model: str, device: str = "cpu") -> list[Case]:
    cases = [Case(m) for m in ("bare", "none", "naive", "no_grad", "prefix", "shared")]
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
    flags = (_cpuinfo("flags") or "").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


# -- building one model's problem -----------------------------------------------------------------------------
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
    """One model, one box-inpainting measurement, one mid-chain step; ``step(case)`` runs that case's step."""

    def __init__(self, model: str, device: str):
        from operators import make_operator
        from operators.random import generators_from_seeds
        from priors.adm import ADMPrior
        from priors.sd import random_sd_prior
        from solvers import default_solver, prior_space

        self.model, self.device = model, device
        self.latent = model not in ADM_MODELS
        if not self.latent:
            preset, self.layers = ADM_MODELS[model]
            prior = ADMPrior.from_preset(preset, init="random", generator=torch.Generator().manual_seed(0))
        else:
            self.layers = (SD_LAYER,)
            size = SD_MODELS[model]
            prior = random_sd_prior(seed=0, image_size=size) if model == "test_sd" else sd15_shaped_prior(size, 0)
        self.prior = prior.to(device).eval().requires_grad_(False)
        self.solver_name = default_solver(prior_space(self.prior))  # DPS for pixel priors, PSLD for latent ones
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

    def solver(self, case: Case):
        from solvers import PAG, SOLVERS, NoisePredictor

        if case not in self.solvers:
            mode = PAG_MODES.get(case.mode)
            pag = PAG(2.0, self.layers, mode=mode) if mode else None
            # the solver's default step sizes (DPS: zeta = 1; PSLD: omega = 1, gamma = 0.1): the cost does not
            # depend on them
            solver = SOLVERS[self.solver_name].cls(self.prior, self.op, num_steps=1000, pag=pag, progress=False)
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
        from solvers import StepContext

        solver, predictor = self.solver(case)
        self.set_lever(case.lever)
        i = len(solver.schedule) // 2  # a mid-chain step: PAG is active, nothing special about it
        if case.mode == "bare":
            return BARE_STEPS[self.solver_name](self, solver, i)
        # PSLD's DDIM step with eta = 0 does not use the noise
        return solver.step(StepContext(predictor, self.y, self.generators, self.noise), i, self.x_t)[0]

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()


def dps_bare_step(p: Problem, solver, i: int) -> torch.Tensor:
    """The DPS update written straight from the equations against the raw network (the baseline)."""
    sched, net = solver.schedule, p.prior.network
    t = sched.timesteps[i].to(p.x_t.device).expand(p.x_t.shape[0])
    x_t = p.x_t.detach().requires_grad_(True)
    eps, v = net(x_t, t).chunk(2, dim=1)
    x0_hat = sched.predict_x0(i, x_t, eps).clamp(-1, 1)
    log_var = sched.log_variance(i, x_t, "learned_range", v.detach())
    x_prev = sched.ddpm_step(i, x0_hat.detach(), x_t.detach(), p.noise, log_var)
    loss = (p.y - p.op(x0_hat)).flatten(1).norm(dim=1).sum()
    return x_prev - torch.autograd.grad(loss, x_t)[0]


def psld_bare_step(p: Problem, solver, i: int) -> torch.Tensor:
    """The PSLD update straight from the equations against the raw UNet / VAE (the baseline)."""
    sched, prior, op, y = solver.schedule, p.prior, p.op, p.y
    t = torch.full((p.x_t.shape[0],), int(sched.timesteps[i]), device=p.x_t.device)
    z_t = p.x_t.detach().requires_grad_(True)
    eps = prior.unet(z_t, t, encoder_hidden_states=prior.null_embedding).sample
    z0_hat = sched.predict_x0(i, z_t, eps)
    z_prev = sched.ddim_step(i, z0_hat.detach(), eps.detach())
    x0 = prior.vae.decode(z0_hat / prior.scaling_factor).sample
    meas = (y - op(x0)).flatten(1).norm(dim=1)
    glued = op.transpose(y) + x0 - op.transpose(op(x0))
    glue = (prior.vae.encode(glued).latent_dist.mean * prior.scaling_factor - z0_hat).flatten(1).norm(dim=1)
    loss = (solver.omega * meas + solver.gamma * glue).sum()
    return z_prev - torch.autograd.grad(loss, z_t)[0]


#: the bare baseline of each solver the benchmark times (a solver's equations, written without our machinery)
BARE_STEPS = {"dps": dps_bare_step, "psld": psld_bare_step}


# -- workers ----------------------------------------------------------------------------------------------------
def time_model(model: str, device: str, warmup: int, repeats: int) -> list[Result]:
    problem = Problem(model, device)
    cases = cases_for(model, device)
    results = {case: Result(model, case.mode, case.lever) for case in cases}
    for _ in range(warmup):
        for case in cases:
            problem.step(case)
    problem.sync()
    order = random.Random(0)
    for _ in range(repeats):
        # round-robin, so that load drifts hit every case alike, in a new order every round, so that no case
        # always follows the same one (what the previous step left behind, freed memory say, costs the next)
        for case in order.sample(cases, len(cases)):
            start = time.perf_counter()
            problem.step(case)
            problem.sync()
            results[case].seconds.append(time.perf_counter() - start)
    return list(results.values())


def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def step_costs(model: str, case: Case, device: str) -> dict[str, float]:
    """One step's peak memory in MB above the loaded model (after one warm-up step), its GFLOP (matmuls,
    convolutions and attention, forward and backward, counted by torch.utils.flop_counter: the work a case does,
    whatever the machine's noise) and its number of aten operator calls (what a small model's step time follows)."""
    problem = Problem(model, device)
    cuda = device.startswith("cuda")
    # the loaded model: measured before the warm-up step, because a caching allocator (CUDA's, or glibc told to
    # retain) keeps the warm-up step's memory, so that the measured step would otherwise read ~0
    base = torch.cuda.memory_allocated() if cuda else _status_kb("VmRSS") * 1024
    problem.step(case)  # warm-up: lazy allocations, cuDNN / oneDNN plans, the shared prefix's plan
    problem.sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        problem.step(case)
        problem.sync()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set (VmHWM) to the current one
        problem.step(case)
        peak = (_status_kb("VmHWM") * 1024 - base) / 2**20
    with FlopCount() as counter:
        problem.step(case)
    return {"peak_mb": peak, "gflop": counter.flops / 1e9, "ops": counter.ops}


class FlopCount(TorchDispatchMode):
    """Total FLOPs of every op torch's flop_counter has a formula for, and the number of aten operator calls.
    (FlopCounterMode itself attributes FLOPs to modules through backward hooks that ``torch.autograd.grad`` on a
    leaf refuses.)"""

    def __init__(self):
        super().__init__()
        self.flops = 0
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops += 1
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


# -- driver -----------------------------------------------------------------------------------------------------
def run_worker(args: argparse.Namespace, malloc: str, *worker: str) -> object:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        *worker,
        "--device",
        args.device,
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
    ]
    env = os.environ | MALLOC_ENV[malloc]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {worker} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- guidance interval: whole restorations ------------------------------------------------------------------
def interval_costs(model: str, device: str, interval: tuple[float, float], num_steps: int, repeats: int) -> list[dict]:
    """Seconds per restoration (median over round-robin rounds) and network passes for PAG off / on / interval."""
    from operators.random import generators_from_seeds
    from solvers import PAG, SOLVERS

    p = Problem(model, device)
    pags = {
        "off": None,
        "pag": PAG(2.0, p.layers),
        f"pag@[{interval[0]:g},{interval[1]:g}]": PAG(2.0, p.layers, interval=interval),
    }

    def restore(pag):
        # the solver's default step sizes, as in Problem.solver
        solver = SOLVERS[p.solver_name].cls(p.prior, p.op, num_steps=num_steps, pag=pag, progress=False)
        return solver.restore(p.y, generators_from_seeds([3]))

    calls: list[int] = []
    handle = p.prior.network.register_forward_hook(lambda *_: calls.append(1))
    passes = {}
    for name, pag in pags.items():
        calls.clear()
        restore(pag)
        passes[name] = len(calls)
    handle.remove()
    seconds: dict[str, list[float]] = {name: [] for name in pags}
    for _ in range(repeats):
        for name in random.sample(list(pags), len(pags)):
            p.sync()
            tic = time.perf_counter()
            restore(pags[name])
            p.sync()
            seconds[name].append(time.perf_counter() - tic)
    ratios = {n: statistics.median(a / b for a, b in zip(s, seconds["off"], strict=True)) for n, s in seconds.items()}
    return [
        {
            "model": model,
            "case": name,
            "steps": num_steps,
            "network_passes": passes[name],
            "seconds": statistics.median(seconds[name]),
            "x_off": ratios[name],
        }
        for name in pags
    ]


def interval_table(rows: list[dict]) -> str:
    lines = ["| model | case | steps | network passes | s / restoration | x off |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['case']} | {r['steps']} | {r['network_passes']} | {r['seconds']:.2f} "
            f"| {r['x_off']:.2f} |"
        )
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    """Markdown table; ``x none`` is the median of the per-round ratios to ``none``, with their range."""
    rows = [
        "| model | malloc | case | s/step (median) | spread (min-max) | x none (median) | x none (min-max) "
        "| GFLOP/step | x none (GFLOP) | aten ops/step | peak MB above model |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    none = {(r.model, r.malloc): r for r in results if r.mode == "none" and not r.lever}
    for r in results:
        base = none[r.model, r.malloc]
        label = f"{r.mode}+{r.lever}" if r.lever else r.mode
        peak = "-" if r.peak_mb is None else f"{r.peak_mb:.0f}"
        gflop = "-" if r.gflop is None else f"{r.gflop:.4g}"
        flop_ratio = "-" if r.gflop is None or not base.gflop else f"{r.gflop / base.gflop:.3f}"
        ops = "-" if r.ops is None else str(r.ops)
        time = "| - | - | - | - "
        if r.seconds:
            ratios = r.ratios(base)
            time = (
                f"| {r.median:.4f} | {min(r.seconds):.4f}-{max(r.seconds):.4f} "
                f"| {statistics.median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} "
            )
        rows.append(f"| {r.model} | {r.malloc} | {label} {time}| {gflop} | {flop_ratio} | {ops} | {peak} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["test", "real"], default="test")
    parser.add_argument("--only", default="", help="comma-separated models (test_adm, ffhq_adm, test_sd, sd15_shaped)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (0: only memory, FLOPs, ops)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-case memory / FLOP processes")
    parser.add_argument(
        "--malloc", default="system", help="CPU allocator settings, comma-separated: system (glibc's), retain"
    )
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument(
        "--table", nargs="+", default=[], metavar="JSON", help="print the tables of saved results files and exit"
    )
    parser.add_argument(
        "--interval", default="", metavar="T_LO,T_HI", help="time whole restorations with pag.interval=[T_LO, T_HI]"
    )
    parser.add_argument("--restore-steps", type=int, default=50, help="sampler steps per restoration (--interval)")
    parser.add_argument("--time-worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.table:
        for path in args.table:
            machine, results = read_json(path)
            print(f"{path}\nmachine: {machine}\n\n{table(results)}\n")
        return
    if args.time_worker:
        results = time_model(args.time_worker, args.device, args.warmup, args.repeats)
        print(json.dumps([asdict(r) for r in results]))
        return
    if args.memory_worker:
        model, mode, lever = json.loads(args.memory_worker)
        print(json.dumps(step_costs(model, Case(mode, lever), args.device)))
        return

    models = args.only.split(",") if args.only else ["test_adm", "test_sd"]
    if args.suite == "real" and not args.only:
        models += ["ffhq_adm", "sd15_shaped"]
    if args.interval:
        interval = tuple(float(v) for v in args.interval.split(","))
        if len(interval) != 2 or args.repeats < 1:
            parser.error("--interval takes T_LO,T_HI and needs --repeats >= 1")
        rows = [r for m in models for r in interval_costs(m, args.device, interval, args.restore_steps, args.repeats)]
        if args.json:
            data = {"commit": git_commit(), "threads": torch.get_num_threads(), "rows": rows}
            with open(args.json, "w") as f:
                json.dump(data, f, indent=1)
        print(interval_table(rows))
        return
    if args.repeats < 0 or (args.repeats == 0 and args.no_memory):
        parser.error("--repeats must be >= 1, or 0 (costs only) without --no-memory")
    mallocs = args.malloc.split(",")
    if unknown := set(mallocs) - set(MALLOC_ENV):
        parser.error(f"unknown --malloc {sorted(unknown)}; valid: {', '.join(MALLOC_ENV)}")
    machine = {
        "commit": git_commit(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
        "warmup": args.warmup,
        "repeats": args.repeats,
    }
    results: list[Result] = []
    for malloc in mallocs:
        for model in models:
            print(f"timing {model} (malloc {malloc}) ...", file=sys.stderr, flush=True)
            if args.repeats:
                model_results = [Result(**r) for r in run_worker(args, malloc, "--time-worker", model)]
            else:  # costs only
                model_results = [Result(model, c.mode, c.lever) for c in cases_for(model, args.device)]
            for r in model_results:
                r.malloc = malloc
            if not args.no_memory:
                for r in model_results:
                    print(f"  memory {model} {r.mode} {r.lever}".rstrip(), file=sys.stderr, flush=True)
                    costs = run_worker(args, malloc, "--memory-worker", json.dumps([model, r.mode, r.lever]))
                    r.peak_mb, r.gflop, r.ops = costs["peak_mb"], costs["gflop"], costs["ops"]
            results += model_results
            if args.json:  # after every model: a crash or an interrupt keeps what was measured
                write_json(args.json, machine, results)
    print(f"machine: {machine}\n")
    print(table(results))


def git_commit() -> str | None:
    """The checkout's commit (None outside a git checkout), so that a results file says which code it measured."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here)
    except OSError:
        return None
    return done.stdout.strip() or None


def _cpuinfo(key: str) -> str | None:
    """The first ``key`` line's value in /proc/cpuinfo (None where there is none, e.g. outside Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or "cpu"


def write_json(path: str, machine: dict, results: list[Result]) -> None:
    none = {(r.model, r.malloc): r for r in results if r.mode == "none" and not r.lever}
    rows = []
    for r in results:
        ratios = r.ratios(none[r.model, r.malloc])
        ratio = statistics.median(ratios) if ratios else None
        rows.append(asdict(r) | {"median": r.median, "ratio_to_none": ratio, "ratios": ratios})
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"machine": machine, "results": rows}, f, indent=2)
    os.replace(tmp, path)


def read_json(path: str) -> tuple[dict, list[Result]]:
    """A results file written by ``write_json``: its machine and results (the derived ratios recomputed)."""
    with open(path) as f:
        saved = json.load(f)
    names = {f.name for f in fields(Result)}
    return saved["machine"], [Result(**{k: v for k, v in row.items() if k in names}) for row in saved["results"]]


if __name__ == "__main__":
    main()
