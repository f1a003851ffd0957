"""What PAG costs: seconds per solver step, FLOPs and peak memory, measured side by side in one run.

    python scripts/benchmark.py                                   # small test models: about a minute on a CPU
    python scripts/benchmark.py --suite real --repeats 3          # + FFHQ-ADM at 256 px, SD1.5-shaped PSLD step
    python scripts/benchmark.py --device cuda --suite real --json results.json
    python scripts/benchmark.py --only ffhq_adm --malloc system,retain     # CPU: glibc's allocator and a caching one
    python scripts/benchmark.py --suite real --repeats 0           # no timing: memory, FLOPs, operator calls
    python scripts/benchmark.py --table docs/results/benchmark_ffhq_adm.json   # the tables of saved results
    python scripts/benchmark.py --interval 0,500 --restore-steps 50     # PAG only for t in [0, 500]: full restorations
    python scripts/benchmark.py --only test_adm --solvers dps,ddnm,pigdm,reddiff   # other solvers' steps

For each model it times one full solver step (prior passes, sampler update, data-consistency gradient) of the
model's default solver (DPS for pixel priors, PSLD for latent ones) or of each of ``--solvers`` that runs on it, for
  bare      the solver's update written directly against the network (no guidance machinery at all;
            ``SolverSpec.bare_step``: DPS, PSLD, DDNM, PiGDM, RED-diff)
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
import statistics
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

import torch

from solvers import SOLVERS

from ..report import markdown_table
from .bench_costs import interval_costs, step_costs, time_model
from .bench_problem import Case, Result, cases_for, cpuinfo, model_solver, model_space

# glibc returns every freed block above 32 MB to the kernel, so each new activation of a 256 px network
# page-faults afresh; "retain" keeps freed memory in the heap, as PyTorch's CUDA caching allocator does
# (mallopt(3): M_MMAP_MAX, M_TRIM_THRESHOLD). The workers start with these variables set.
MALLOC_ENV = {"system": {}, "retain": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}}
#: the package root, first on the workers' import path: they run the code this process runs
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


# -- driver -----------------------------------------------------------------------------------------------------
def run_worker(args: argparse.Namespace, malloc: str, solver: str, *worker: str) -> object:
    command = [
        sys.executable,
        "-c",
        "from runner.measure.benchmark import main; main()",
        *worker,
        "--solvers",
        solver,
        "--device",
        args.device,
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
    ]
    path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = os.environ | MALLOC_ENV[malloc] | {"PYTHONPATH": path}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {worker} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def interval_table(rows: list[dict]) -> str:
    header = ["model", "case", "steps", "network passes", "s / restoration", "x off"]
    cells = [
        [r["model"], r["case"], str(r["steps"]), str(r["network_passes"]), f"{r['seconds']:.2f}", f"{r['x_off']:.2f}"]
        for r in rows
    ]
    return markdown_table(header, cells)


def table(results: list[Result]) -> str:
    """Markdown table; ``x none`` is the median of the per-round ratios to ``none``, with their range."""
    header = [
        "model", "solver", "malloc", "case", "s/step (median)", "spread (min-max)", "x none (median)",
        "x none (min-max)", "GFLOP/step", "x none (GFLOP)", "aten ops/step", "peak MB above model",
    ]  # fmt: skip
    none = {(r.model, r.solver, r.malloc): r for r in results if r.mode == "none" and not r.lever}
    rows = []
    for r in results:
        base = none[r.model, r.solver, r.malloc]
        label = f"{r.mode}+{r.lever}" if r.lever else r.mode
        peak = "-" if r.peak_mb is None else f"{r.peak_mb:.0f}"
        gflop = "-" if r.gflop is None else f"{r.gflop:.4g}"
        flop_ratio = "-" if r.gflop is None or not base.gflop else f"{r.gflop / base.gflop:.3f}"
        ops = "-" if r.ops is None else str(r.ops)
        time = ["-"] * 4
        if r.seconds:
            ratios = r.ratios(base)
            time = [
                f"{r.median:.4f}",
                f"{min(r.seconds):.4f}-{max(r.seconds):.4f}",
                f"{statistics.median(ratios):.2f}",
                f"{min(ratios):.2f}-{max(ratios):.2f}",
            ]
        rows.append([r.model, r.solver, r.malloc, label, *time, gflop, flop_ratio, ops, peak])
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["test", "real"], default="test")
    parser.add_argument("--only", default="", help="comma-separated models (test_adm, ffhq_adm, test_sd, sd15_shaped)")
    parser.add_argument(
        "--solvers",
        default="",
        help="comma-separated registered solvers, each measured on the models of its prior space (default: each "
        "model's default solver, DPS / PSLD)",
    )
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
        results = time_model(args.time_worker, args.device, args.warmup, args.repeats, args.solvers)
        print(json.dumps([asdict(r) for r in results]))
        return
    if args.memory_worker:
        model, mode, lever = json.loads(args.memory_worker)
        print(json.dumps(step_costs(model, Case(mode, lever), args.device, args.solvers)))
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
    try:
        runs = model_solvers(models, args.solvers.split(",") if args.solvers else [])
    except ValueError as exc:
        parser.error(str(exc))
    results: list[Result] = []
    for malloc in mallocs:
        for model, solver in runs:
            print(f"timing {model} {solver} (malloc {malloc}) ...", file=sys.stderr, flush=True)
            if args.repeats:
                model_results = [Result(**r) for r in run_worker(args, malloc, solver, "--time-worker", model)]
            else:  # costs only
                cases = cases_for(model, args.device, solver)
                model_results = [Result(model, c.mode, c.lever, solver=solver) for c in cases]
            for r in model_results:
                r.malloc = malloc
            if not args.no_memory:
                for r in model_results:
                    print(f"  memory {model} {solver} {r.mode} {r.lever}".rstrip(), file=sys.stderr, flush=True)
                    task = json.dumps([model, r.mode, r.lever])
                    costs = run_worker(args, malloc, solver, "--memory-worker", task)
                    r.peak_mb, r.gflop, r.ops = costs["peak_mb"], costs["gflop"], costs["ops"]
            results += model_results
            if args.json:  # after every model: a crash or an interrupt keeps what was measured
                write_json(args.json, machine, results)
    print(f"machine: {machine}\n")
    print(table(results))


def model_solvers(models: list[str], solvers: list[str]) -> list[tuple[str, str]]:
    """(model, solver) pairs to measure: each model with its default solver (``solvers`` empty), or with each of
    ``solvers`` that runs on its prior space; ``ValueError`` for an unknown solver or a model none of them fits."""
    if not solvers:
        return [(m, model_solver(m)) for m in models]
    if unknown := [s for s in solvers if s not in SOLVERS]:
        raise ValueError(f"--solvers: unknown {unknown}; registered: {', '.join(SOLVERS)}")
    pairs = []
    for model in models:
        fitting = [s for s in solvers if SOLVERS[s].space == model_space(model)]
        if not fitting:
            raise ValueError(f"--solvers {','.join(solvers)}: none runs on {model} ({model_space(model)} priors)")
        pairs += [(model, s) for s in fitting]
    return pairs


def git_commit() -> str | None:
    """The checkout's commit (None outside a git checkout), so that a results file says which code it measured."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=PACKAGE_ROOT, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def cpu_name() -> str:
    return cpuinfo("model name") or platform.processor() or "cpu"


def write_json(path: str, machine: dict, results: list[Result]) -> None:
    none = {(r.model, r.solver, r.malloc): r for r in results if r.mode == "none" and not r.lever}
    rows = []
    for r in results:
        ratios = r.ratios(none[r.model, r.solver, r.malloc])
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
    results = [Result(**{k: v for k, v in row.items() if k in names}) for row in saved["results"]]
    for r in results:  # files written before the solver was recorded measured the model's default solver
        r.solver = r.solver or model_solver(r.model)
    return saved["machine"], results
