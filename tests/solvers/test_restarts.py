"""Restarts (``solvers.restore_best_of``): per image, the run with the smallest ||y - A(x_hat)||_2 of N runs, each
from its own per-image generators. Checked against the N restorations run separately here and the residual written
out by hand; one restart is one ``restore``; batch invariance; DPS, DAPS and LatentDAPS (a latent solver)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from imaging import ShapesDataset
from operators import GaussianNoise, PhaseRetrieval
from runner.seeds import SAMPLER, image_streams, restart_generators, stream_seed
from solvers import SOLVERS, measurement_residual, restore_best_of

GOLDEN = Path(__file__).with_name("test_golden.py")
NAMES = ("dps", "daps", "latent_daps")
N_IMAGES, RESTARTS = 3, 3


def golden_module():
    """tests/solvers/test_golden.py: its ``CASES`` hold a few-step setting of every registered solver."""
    spec = importlib.util.spec_from_file_location("golden_cases_restarts", GOLDEN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def golden():
    return golden_module()


@pytest.fixture(scope="module")
def problem():
    """Phase retrieval of three shapes test images (DPS's convention, noise sigma 0.05), float64."""
    op = PhaseRetrieval(oversample=2.0, image_size=32, noise=GaussianNoise(0.05)).to(torch.float64)
    x = ShapesDataset("test", n=N_IMAGES, size=32, start=11).tensor().to(torch.float64)
    y = op.measure(x, [torch.Generator().manual_seed(40 + b) for b in range(N_IMAGES)])
    return op, y


def build(name: str, golden, op):
    case = golden.CASES[name]
    prior = golden.load_prior(case.prior)
    return SOLVERS[name].cls(prior, op, **case.step_sizes, num_steps=case.num_steps, progress=False, **case.options)


def gens(restart: int, images: range | list[int] = range(N_IMAGES)) -> list[torch.Generator]:
    """Restart ``restart``'s generator of each image: seed 100 * restart + image (any fixed, distinct seeds)."""
    return [torch.Generator().manual_seed(100 * restart + b) for b in images]


def residual_by_hand(op, x_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sqrt(sum over the measurement's entries of (y - A(x_hat))^2), per image."""
    with torch.no_grad():
        r = y - op(x_hat)
    return torch.stack([torch.sqrt((r[b] ** 2).sum()) for b in range(len(r))]).double()


@pytest.fixture(scope="module", params=NAMES)
def runs(request, golden, problem):
    """(solver name, solver, the N restorations run separately, restore_best_of's result)."""
    op, y = problem
    solver = build(request.param, golden, op)
    separate = [solver.restore(y, gens(k)) for k in range(RESTARTS)]
    kept = restore_best_of(solver, y, [gens(k) for k in range(RESTARTS)])
    return request.param, solver, separate, kept


def test_keeps_per_image_the_restart_with_the_smallest_residual(runs, problem):
    op, y = problem
    name, _, separate, kept = runs
    residuals = torch.stack([residual_by_hand(op, x, y) for x in separate])  # (restarts, images)
    torch.testing.assert_close(kept.residuals, residuals, rtol=1e-12, atol=0)
    best = residuals.argmin(dim=0)
    assert kept.best == best.tolist()
    for b in range(N_IMAGES):
        assert torch.equal(kept.x_hat[b], separate[int(best[b])][b]), f"{name}: image {b}"
    # not a vacuous pick: the restarts differ, and some image keeps a restart other than the first
    assert all((separate[k] - separate[0]).abs().max() > 1e-3 for k in range(1, RESTARTS))


def test_some_image_keeps_a_later_restart(golden, problem):
    """With these seeds DPS's picks are not all restart 0 (else the selection above would be untested)."""
    op, y = problem
    kept = restore_best_of(build("dps", golden, op), y, [gens(k) for k in range(RESTARTS)])
    assert any(k > 0 for k in kept.best), kept.best


def test_one_restart_is_one_restore(runs, problem):
    _, solver, separate, _ = runs
    _, y = problem
    kept = restore_best_of(solver, y, [gens(0)])
    assert torch.equal(kept.x_hat, separate[0]) and kept.best == [0] * N_IMAGES
    assert kept.residuals.shape == (1, N_IMAGES)


def test_batch_invariance(runs, problem):
    """Image b kept from a batch equals image b restarted alone with its own generators."""
    _, y = problem
    name, solver, _, kept = runs
    for b in range(N_IMAGES):
        alone = restore_best_of(solver, y[b : b + 1], [gens(k, [b]) for k in range(RESTARTS)])
        assert alone.best == [kept.best[b]], name
        torch.testing.assert_close(alone.x_hat[0], kept.x_hat[b], rtol=0, atol=1e-10)


def test_on_restart_counts_the_restarts_and_callbacks_reach_every_run(golden, problem):
    op, y = problem
    solver = build("dps", golden, op)
    seen, steps = [], []
    restore_best_of(
        solver,
        y,
        [gens(k) for k in range(2)],
        on_restart=lambda k, n: seen.append((k, n)),
        callback=steps.append,
        callback_every=1,
    )
    assert seen == [(0, 2), (1, 2)] and len(steps) == 2 * golden.CASES["dps"].num_steps


def test_measurement_residual_is_the_l2_norm_of_the_misfit(problem):
    op, y = problem
    x = torch.zeros(N_IMAGES, 3, 32, 32, dtype=torch.float64)
    # A(0) = 0 (the Fourier magnitude of a zero image): the residual is ||y||_2
    torch.testing.assert_close(measurement_residual(op, x, y), y.flatten(1).norm(dim=1), rtol=1e-12, atol=0)


def test_refuses_no_restart_and_no_operator(golden, problem):
    op, y = problem
    with pytest.raises(ValueError, match="at least one restart"):
        restore_best_of(build("dps", golden, op), y, [])
    solver = build("dps", golden, op)
    solver.operator = None
    with pytest.raises(ValueError, match="needs an operator"):
        restore_best_of(solver, y, [gens(0)])


def test_restart_streams():
    """Restart 0 of an image is its sampler stream (a run without restarts); later restarts are other streams,
    and the same whatever other images are in the batch."""
    seed, indices = 7, [3, 12]
    streams = restart_generators(seed, indices, 3)
    draws = [[torch.randn(4, generator=g) for g in restart] for restart in streams]
    usual = [torch.randn(4, generator=g) for g in image_streams(seed, indices).sampler]
    by_seed = [torch.randn(4, generator=torch.Generator().manual_seed(stream_seed(seed, i, SAMPLER))) for i in indices]
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(draws[0], usual, by_seed))
    flat = [d for restart in draws for d in restart]
    assert all(not torch.equal(flat[i], flat[j]) for i in range(len(flat)) for j in range(i))
    alone = restart_generators(seed, [12], 3)
    assert all(torch.equal(torch.randn(4, generator=alone[k][0]), draws[k][1]) for k in range(3))
    with pytest.raises(ValueError):
        restart_generators(seed, indices, 0)
