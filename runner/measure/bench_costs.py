"""How the benchmark measures a case: seconds per step (round-robin rounds), one step's peak memory, FLOPs and aten
operator calls, and whole restorations with a PAG interval (seconds and network passes)."""

from __future__ import annotations

import random
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from operators.random import generators_from_seeds
from solvers import PAG

from .bench_problem import Case, Problem, Result, cases_for
from .passes import PassCounter


def time_model(model: str, device: str, warmup: int, repeats: int, solver: str | None = None) -> list[Result]:
    problem = Problem(model, device, solver)
    cases = cases_for(model, device, solver)
    results = {case: Result(model, case.mode, case.lever, solver=problem.solver_name) for case in cases}
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


def step_costs(model: str, case: Case, device: str, solver: str | None = None) -> dict[str, float]:
    """One step's peak memory in MB above the loaded model (after one warm-up step), its GFLOP (matmuls,
    convolutions and attention, forward and backward, counted by torch.utils.flop_counter: the work a case does,
    whatever the machine's noise) and its number of aten operator calls (what a small model's step time follows).
    ``solver``: whose step (default: the model's default solver)."""
    problem = Problem(model, device, solver)
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


def interval_costs(model: str, device: str, interval: tuple[float, float], num_steps: int, repeats: int) -> list[dict]:
    """Seconds per restoration (median over round-robin rounds) and network passes for PAG off / on / interval."""
    p = Problem(model, device)
    pags = {
        "off": None,
        "pag": PAG(2.0, p.layers),
        f"pag@[{interval[0]:g},{interval[1]:g}]": PAG(2.0, p.layers, interval=interval),
    }

    def restore(pag):
        return p.new_solver(pag, num_steps).restore(p.y, generators_from_seeds([3]))

    passes = {}
    with PassCounter(p.prior) as counter:
        for name, pag in pags.items():
            counter.reset()
            restore(pag)
            passes[name] = counter.forward
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
