"""Golden outputs: every registered solver, with and without PAG, on both shipped tiny priors, reproduces the outputs
stored before the core was refactored (``python tests/solvers/test_golden.py --write`` makes them; ``--add`` computes
only the keys missing from the file, for a newly registered solver, and leaves every stored one as it is).

Tolerance: 1e-9 absolute on values of order 1, in float64. A refactor that keeps the equations but reorders
arithmetic (a sum split differently, a factor applied before instead of after a product) moves results by a few
ulps per operation (~1e-16 relative), amplified over a few steps through the network's Jacobians and the data
gradient; 1e-9 leaves six orders of magnitude for that and still fails for any real change of an equation, a
step size, a noise draw or a schedule entry (those move values by >= 1e-4 here).

Rewrite the stored outputs only for a deliberate change of behaviour, and say so in the commit.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from solvers import SOLVERS

GOLDEN_FILE = Path(__file__).with_name("golden.safetensors")
NUM_IMAGES = 2
#: operator -> its arguments (``generator``: the offset of the per-image generators that draw its parameters)
TASKS: dict[str, dict[str, Any]] = {
    "box_inpaint": {"image_size": 32, "hole": 12, "margin": 4, "generator": 1},
    "super_resolution": {"factor": 4},
    "gaussian_blur": {"kernel_size": 9, "sigma": 2.0},
}
#: PAG layer of each shipped prior (the step table's shapes rows)
PAG_LAYERS = {"tiny_adm": ("output_blocks.4.1",), "tiny_sd": ("output_blocks.10.1",)}
PAG_SCALE = 2.0
NUM_DIRECTIONS = 8


@dataclass(frozen=True)
class Case:
    solver: str
    prior: str
    step_sizes: dict[str, float]
    num_steps: int
    options: dict[str, Any] = field(default_factory=dict)


#: solver -> its settings here (pixel solvers on the tiny ADM, latent ones on the tiny latent prior)
CASES: dict[str, Case] = {
    "dps": Case("dps", "tiny_adm", {"zeta": 1.0}, 4),
    "diffpir": Case("diffpir", "tiny_adm", {"lam": 7.0, "zeta": 0.5}, 4),
    "daps": Case("daps", "tiny_adm", {"lr": 1e-4}, 3, {"ode_steps": 3, "mcmc_steps": 3}),
    # pinv_rcond None: the exact A^+ the stored outputs were made with (the default 3e-2 filters the blur's)
    "ddnm": Case("ddnm", "tiny_adm", {"eta": 0.85}, 4, {"travel_repeat": 2, "pinv_rcond": None}),
    "pigdm": Case("pigdm", "tiny_adm", {"weight": 1.0}, 4, {"eta": 0.5}),
    "psld": Case("psld", "tiny_sd", {"omega": 1.0, "gamma": 0.1}, 4),
    "latent_daps": Case(
        "latent_daps",
        "tiny_sd",
        {"lr": 1e-5, "mcmc_steps": 3, "lr_min_ratio": 1.0, "momentum": 0.9},
        3,
        {"ode_steps": 2},
    ),
    "reddiff": Case("reddiff", "tiny_adm", {"lam": 0.25, "lr": 0.1}, 4),
    # 6 steps resampling at every counted-down index 1..4: pixel searches at 4, 3, 2, a latent one at 1, the final one
    "resample": Case(
        "resample",
        "tiny_sd",
        {"zeta": 0.5, "gamma": 40.0, "pixel_iters": 5, "latent_iters": 5, "resample_every": 1},
        6,
        {"travel_steps": 2, "latent_patience": 2},
    ),
}


def load_prior(name: str):
    """The shipped tiny prior ``name`` in float64."""
    from priors.tiny import load_tiny_adm, load_tiny_sd

    prior = load_tiny_adm() if name == "tiny_adm" else load_tiny_sd()
    return prior.to(torch.float64)


def images() -> torch.Tensor:
    from imaging import ShapesDataset

    return ShapesDataset("test", n=NUM_IMAGES, size=32, start=7).tensor().to(torch.float64)


def generators(offset: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(1000 * offset + i) for i in range(NUM_IMAGES)]


def run_case(
    case: Case, task: str, pag: bool, prior_loader: Callable[[str], Any] = load_prior
) -> dict[str, torch.Tensor]:
    """The restoration and the per-step callback tensors of one case (keys ``recon``, ``x_t``, ``x0_hat``)."""
    from operators import make_operator
    from solvers import PAG

    torch.set_num_threads(1)
    prior = prior_loader(case.prior)
    x = images()
    kwargs = {k: generators(v) if k == "generator" else v for k, v in TASKS[task].items()}
    op = make_operator(task, **kwargs).to(torch.float64)
    y = op.measure(x, generator=generators(2))
    pag_settings = PAG(scale=PAG_SCALE, layers=PAG_LAYERS[case.prior]) if pag else None
    cls = SOLVERS[case.solver].cls
    solver = cls(
        prior, op, **case.step_sizes, num_steps=case.num_steps, pag=pag_settings, progress=False, **case.options
    )
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []
    recon = solver.restore(
        y, generators(3), callback=lambda info: steps.append((info.x_t, info.x0_hat)), callback_every=1
    )
    return {
        "recon": recon.detach(),
        "x_t": project(torch.stack([s[0] for s in steps])),
        "x0_hat": project(torch.stack([s[1] for s in steps])),
    }


def project(steps: torch.Tensor) -> torch.Tensor:
    """Each image of each step, (steps, B, ...), as its inner products with ``NUM_DIRECTIONS`` fixed random unit
    vectors, (steps, B, NUM_DIRECTIONS): keeps the stored file small (the full restoration is stored as is) while
    any change of an intermediate tensor moves them (|<d, a> - <d, b>| <= ||a - b||_2 for unit d)."""
    flat = steps.flatten(2)
    directions = torch.randn(
        NUM_DIRECTIONS, flat.shape[-1], generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    directions = directions / directions.norm(dim=1, keepdim=True)
    return flat @ directions.T


def case_names() -> list[tuple[str, str, bool]]:
    return [(solver, task, pag) for solver in CASES for task in TASKS for pag in (False, True)]


def key(solver: str, task: str, pag: bool, what: str) -> str:
    return f"{solver}/{task}/{'pag' if pag else 'nopag'}/{what}"


def write() -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for solver, task, pag in case_names():
        for what, value in run_case(CASES[solver], task, pag).items():
            tensors[key(solver, task, pag, what)] = value.contiguous()
        print(solver, task, "pag" if pag else "no pag", "done", flush=True)
    save_file(tensors, GOLDEN_FILE)
    print(f"wrote {GOLDEN_FILE} ({GOLDEN_FILE.stat().st_size / 1e6:.2f} MB)")


def add() -> None:
    """Append the outputs of the cases whose keys are missing; the stored tensors are written back unchanged (checked
    by reading the file again)."""
    from safetensors.torch import load_file, save_file

    before = load_file(GOLDEN_FILE)
    tensors = dict(before)
    for solver, task, pag in case_names():
        if all(key(solver, task, pag, what) in before for what in ("recon", "x_t", "x0_hat")):
            continue
        for what, value in run_case(CASES[solver], task, pag).items():
            tensors[key(solver, task, pag, what)] = value.contiguous()
        print(solver, task, "pag" if pag else "no pag", "added", flush=True)
    save_file(tensors, GOLDEN_FILE)
    after = load_file(GOLDEN_FILE)
    changed = [k for k, v in before.items() if not (v.dtype == after[k].dtype and torch.equal(v, after[k]))]
    assert not changed, f"stored outputs changed: {changed}"
    print(f"{GOLDEN_FILE}: {len(after) - len(before)} keys added, {len(before)} kept unchanged")


ATOL = 1e-9


@functools.cache
def _prior(name: str):
    return load_prior(name)


@functools.cache
def _golden() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(GOLDEN_FILE)


def test_every_registered_solver_has_golden_outputs():
    stored = {k.split("/")[0] for k in _golden()}
    assert set(SOLVERS) <= set(CASES), f"add a golden case for {sorted(set(SOLVERS) - set(CASES))}"
    assert set(CASES) <= stored, f"regenerate {GOLDEN_FILE.name} (python tests/solvers/test_golden.py --write)"


@pytest.mark.parametrize(("solver", "task", "pag"), case_names(), ids=lambda v: str(v))
def test_golden_output(solver, task, pag):
    out = run_case(CASES[solver], task, pag, prior_loader=_prior)
    golden = _golden()
    for what, value in out.items():
        expected = golden[key(solver, task, pag, what)]
        assert value.shape == expected.shape, what
        assert value.dtype == torch.float64
        err = (value - expected).abs().max().item()
        assert err <= ATOL, f"{solver} {task} pag={pag} {what}: max |diff| {err:.3e} > {ATOL:g}"


if __name__ == "__main__" and "--write" in sys.argv:
    write()
elif __name__ == "__main__" and "--add" in sys.argv:
    add()
