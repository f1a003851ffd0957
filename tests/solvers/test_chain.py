"""A solver written in this file alone (its settings, its step equations, its registry entry passed in at runtime)
restores through the same chain as the shipped ones: progress bar, a callback after every step, DivergenceError
for a non-finite step, x_T honoured, batch invariance with per-image generators. What docs/solvers.md says about
adding a solver, checked."""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field

import pytest
import torch
from torch import Tensor

import solvers
from operators import Operator
from operators.random import generators_from_seeds
from priors import GaussianPrior, Prior, VPDenoiser
from solvers import PAG, ChainSolver, DivergenceError, Solver, SolverSpec, StepContext, registry

SHAPE = (1, 4, 4)
D = 16


@dataclass(eq=False)
class GradientDDIM(ChainSolver):
    """A toy posterior sampler: a data-gradient step on Tweedie's estimate, then DDIM re-noising with a share
    ``zeta`` of fresh noise (DiffPIR's eq. 15 with a gradient step for its proximal step).

        x0_hat  = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
        x0_y    = x0_hat - kappa A^T (A x0_hat - y)
        x_prev  = sqrt(abar_prev) x0_y + sqrt(1 - abar_prev) (sqrt(1 - zeta) eps_hat(x0_y) + sqrt(zeta) z)
    """

    prior: Prior = field(repr=False)
    operator: Operator | None = field(default=None, repr=False)
    kappa: float = 0.5
    _: KW_ONLY
    num_steps: int = 6
    zeta: float = 0.5
    pag: PAG | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.schedule = self.prior.schedule.sampling(self.prior.schedule.timesteps(self.num_steps))
        self.timesteps = self.schedule.timesteps.tolist()
        self.denoiser = VPDenoiser(self.schedule)

    def step(self, ctx: StepContext, i: int, x_t: Tensor) -> tuple[Tensor, Tensor]:
        pred = ctx.predict(x_t, self.timesteps[i])
        x0_hat = self.denoiser.x0(i, x_t, pred.eps_data)
        x0_y = x0_hat if ctx.y is None else x0_hat - self.kappa * self.operator.adjoint(self.operator(x0_hat) - ctx.y)
        abar_prev = float(self.schedule.alphas_cumprod_prev[i])
        direction = math.sqrt(1 - self.zeta) * self.denoiser.eps(i, x_t, x0_y) + math.sqrt(self.zeta) * ctx.noise
        return math.sqrt(abar_prev) * x0_y + math.sqrt(1 - abar_prev) * direction, x0_hat


SPEC = SolverSpec(cls=GradientDDIM, space="pixel", params=("kappa",), table="gradient_ddim")


@pytest.fixture
def registered(monkeypatch):
    """The solver's registry entry, present for this test only."""
    monkeypatch.setitem(registry.SOLVERS, "gradient_ddim", SPEC)
    return solvers.SOLVERS["gradient_ddim"]


@pytest.fixture(scope="module")
def problem(matrix_operator):
    g = torch.Generator().manual_seed(0)
    coords = torch.cartesian_prod(torch.arange(4.0), torch.arange(4.0))
    covariance = 0.25 * torch.exp(-torch.cdist(coords, coords) / 2.0) + 1e-2 * torch.eye(D)
    prior = GaussianPrior(0.1 * torch.randn(D, generator=g).double(), covariance.double(), SHAPE)
    A = torch.randn(8, D, generator=g, dtype=torch.float64) / math.sqrt(8)
    op = matrix_operator(A, noise_sigma=0.05, shape=SHAPE)
    x0 = 0.3 * torch.randn(2, *SHAPE, generator=g, dtype=torch.float64)
    y = op.measure(x0, generators_from_seeds([5, 6]))
    return prior, op, A, y


def build(spec: SolverSpec, problem, **kwargs):
    prior, op, _, _ = problem
    defaults = {"num_steps": 6, "progress": False}
    return spec.build(prior, op, {"kappa": 0.5}, options={"zeta": 0.5}, **{**defaults, **kwargs})


def test_built_from_its_registry_entry(registered, problem):
    solver = build(registered, problem)
    assert isinstance(solver, GradientDDIM) and isinstance(solver, Solver)
    assert solver.kappa == 0.5 and solver.zeta == 0.5 and solver.num_steps == 6


def test_callback_after_every_step_with_the_steps_tensors(registered, problem):
    """StepInfo i = 0..N-1 with the schedule's t; x_t is the step's output and x0_hat Tweedie's estimate at its
    input, both checked against the equations written out here."""
    prior, _, _, y = problem
    solver = build(registered, problem)
    infos = []
    out = solver.restore(y, generators_from_seeds([1, 2]), callback=infos.append, callback_every=1)
    assert [info.i for info in infos] == list(range(6))
    assert [info.t for info in infos] == solver.schedule.timesteps.tolist() and infos[0].t == 999
    assert all(info.num_steps == 6 for info in infos)
    assert torch.equal(out, infos[-1].x_t.clamp(-1, 1))  # pixel prior: the last iterate, clamped
    # step 1 from step 0's output, by hand: the chain fed the step its previous output
    x_t, t = infos[0].x_t, infos[1].t
    abar = prior.schedule.alphas_cumprod[t].item()
    eps = prior(x_t, t).eps
    x0_hat = (x_t - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
    torch.testing.assert_close(infos[1].x0_hat, x0_hat, rtol=0, atol=1e-10)
    every_two = []
    solver.restore(y, generators_from_seeds([1, 2]), callback=every_two.append, callback_every=4)
    assert [info.i for info in every_two] == [0, 4, 5]  # and always after the last step


def test_progress_bar(registered, problem, capsys):
    y = problem[-1]
    build(registered, problem, progress=True).restore(y, generators_from_seeds([1, 2]))
    assert "GradientDDIM" in capsys.readouterr().err
    build(registered, problem, progress=False).restore(y, generators_from_seeds([1, 2]))
    assert capsys.readouterr().err == ""


def test_a_nan_step_raises_divergence_error(registered, problem, monkeypatch):
    y = problem[-1]
    solver = build(registered, problem)
    step = solver.step

    def diverging(ctx, i, x):
        x_next, x0_hat = step(ctx, i, x)
        if i == 3:
            x_next = x_next.clone()
            x_next[1, 0, 0, 0] = float("nan")
        return x_next, x0_hat

    monkeypatch.setattr(solver, "step", diverging)
    with pytest.raises(DivergenceError) as caught:
        solver.restore(y, generators_from_seeds([1, 2]))
    assert (caught.value.step, caught.value.timestep, caught.value.samples) == (3, solver.timesteps[3], [1])


def test_x_T_is_the_first_iterate(registered, problem, monkeypatch):
    y = problem[-1]
    solver = build(registered, problem)
    x_T = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    seen = []
    step = solver.step
    monkeypatch.setattr(solver, "step", lambda ctx, i, x: seen.append(x) or step(ctx, i, x))
    given = solver.restore(y, generators_from_seeds([1, 2]), x_T=x_T)
    assert torch.equal(seen[0], x_T)
    seen.clear()
    drawn = solver.restore(y, generators_from_seeds([1, 2]))
    # default: x_T ~ N(0, I) from generator b for image b (drawn in float32, the project's convention)
    expected = torch.stack([torch.randn(SHAPE, generator=g) for g in generators_from_seeds([1, 2])]).double()
    assert torch.equal(seen[0], expected)
    assert (given - drawn).abs().max() > 1e-3


def test_batch_invariance_with_per_image_generators(registered, problem):
    """Image b's restoration depends on its generator only: the batch equals each image restored alone."""
    y = problem[-1]
    batch = build(registered, problem).restore(y, generators_from_seeds([3, 4]))
    for b in range(2):
        alone = build(registered, problem).restore(y[b : b + 1], generators_from_seeds([3 + b]))
        torch.testing.assert_close(batch[b : b + 1], alone, rtol=0, atol=1e-12)
    other = build(registered, problem).restore(y, generators_from_seeds([3, 5]))
    assert torch.equal(other[0], batch[0]) and (other[1] - batch[1]).abs().max() > 1e-3


def test_unconditional_and_the_step_noise(registered, problem):
    """Without y the step skips the data term; zeta = 0 makes the chain deterministic (no draw enters), zeta > 0
    does not: the chain's per-step noise reaches the step."""
    prior = problem[0]
    gens = generators_from_seeds([1, 2])
    solver = registered.cls(prior, None, num_steps=6, zeta=0.0, progress=False)
    x_T = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    a = solver.restore(None, gens, batch_size=2, x_T=x_T)
    b = solver.restore(None, generators_from_seeds([7, 8]), batch_size=2, x_T=x_T)
    assert torch.equal(a, b)
    noisy = registered.cls(prior, None, num_steps=6, zeta=0.5, progress=False)
    c = noisy.restore(None, generators_from_seeds([1, 2]), batch_size=2, x_T=x_T)
    d = noisy.restore(None, generators_from_seeds([7, 8]), batch_size=2, x_T=x_T)
    assert (c - d).abs().max() > 1e-3


def test_a_solver_defined_here_gets_its_options_from_its_constructor():
    """Nothing lists GradientDDIM's options but its own signature: the registry reads ``zeta`` (``progress`` and
    ``num_steps`` are the runner's, ``kappa`` is a step size)."""
    assert SPEC.options == ("zeta",)
