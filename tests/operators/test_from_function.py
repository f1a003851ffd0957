"""Your own operator: ``from_function`` (a plain function as an Operator, its adjoint by the vector-Jacobian product
checked against the inner-product identity) and ``load_operator`` ("<module>:<name>" from the working directory),
against dense linear algebra."""

from __future__ import annotations

import textwrap

import pytest
import torch

from operators import FunctionOperator, NoNoise, Operator, from_function, load_operator

SHAPE = (2, 4, 4)
D = 2 * 4 * 4


def dense(seed: int = 0, m: int = 20) -> torch.Tensor:
    """A dense (m, D) matrix of rank m < D (a null space)."""
    return torch.randn(m, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def apply(matrix: torch.Tensor):
    return lambda x: (x.flatten(1) @ matrix.T).view(x.shape[0], 1, 1, -1)


def images(seed: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_vjp_adjoint_is_the_dense_transpose():
    M = dense()
    op = from_function(apply(M), linear=True, image_shape=SHAPE)
    assert isinstance(op, Operator) and op.is_linear
    y = torch.randn(2, 1, 1, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(op.adjoint(y).flatten(1), y.flatten(1) @ M, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.transpose(y), op.adjoint(y))


def test_vjp_adjoint_learns_the_shape_from_a_forward_call():
    op = from_function(apply(dense()), linear=True)
    y = torch.zeros(1, 1, 1, 20, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="image_shape"):
        op.adjoint(y)
    op(images(0, batch=1))
    assert op.adjoint(y).shape == (1, *SHAPE)


def test_a_wrong_adjoint_is_refused_and_a_right_one_checked_once():
    M = dense()
    wrong = from_function(apply(M), adjoint=lambda y: 2 * (y.flatten(1) @ M).view(-1, *SHAPE), image_shape=SHAPE)
    assert wrong.is_linear  # an adjoint makes it linear
    with pytest.raises(ValueError, match="inner-product identity"):
        wrong.adjoint(torch.zeros(1, 1, 1, 20, dtype=torch.float64))

    calls = []

    def right(y):
        calls.append(1)
        return (y.flatten(1) @ M).view(-1, *SHAPE)

    op = from_function(apply(M), adjoint=right, image_shape=SHAPE)
    for _ in range(3):
        op.adjoint(torch.zeros(1, 1, 1, 20, dtype=torch.float64))
    assert len(calls) == 1 + 3  # the check once, then each call


def test_a_nonlinear_function_claimed_linear_is_refused():
    M = dense()
    affine = from_function(lambda x: apply(M)(x) + 1.0, linear=True, image_shape=SHAPE)
    with pytest.raises(ValueError, match="linear=False"):
        affine.adjoint(torch.zeros(1, 1, 1, 20, dtype=torch.float64))
    with pytest.raises(ValueError, match="only a linear map"):
        from_function(torch.tanh, adjoint=lambda y: y, linear=False)


def test_nonlinear_function_has_a_gradient_and_no_algebra():
    op = from_function(lambda x: torch.tanh(2 * x), noise_sigma=0.0, name="saturate")
    assert op.is_linear is False and op.name == "saturate" and op.noise_sigma == 0.0
    x = images(2).requires_grad_()
    (grad,) = torch.autograd.grad(op(x).sum(), x)
    torch.testing.assert_close(grad, 2 / torch.cosh(2 * x.detach()) ** 2)
    with pytest.raises(NotImplementedError, match="nonlinear"):
        op.adjoint(op(x))
    with pytest.raises(NotImplementedError, match="linear"):
        op.prox_l2(op(x), x, 1.0)


@pytest.mark.parametrize("adjoint", ["vjp", "given"])
def test_linear_function_gets_prox_and_pinv(adjoint):
    """The conjugate-gradient defaults through the wrapped adjoint equal the dense solves."""
    M = dense()
    given = (lambda y: (y.flatten(1) @ M).view(-1, *SHAPE)) if adjoint == "given" else None
    op = from_function(apply(M), adjoint=given, linear=True, image_shape=SHAPE)
    x, x0 = images(3), images(4)
    y = op(x) + 0.1 * torch.randn(2, 1, 1, 20, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    rho = 0.3
    normal = M.T @ M + rho * torch.eye(D, dtype=torch.float64)
    expected = torch.linalg.solve(normal, (y.flatten(1) @ M + rho * x0.flatten(1)).T)
    got = op.prox_l2(y, x0, rho, max_iter=500, tol=1e-14)
    torch.testing.assert_close(got.flatten(1), expected.T, rtol=0, atol=1e-9)
    pinv = op.pinv(y, max_iter=500, tol=1e-14)
    torch.testing.assert_close(pinv.flatten(1), y.flatten(1) @ torch.linalg.pinv(M).T, rtol=0, atol=1e-9)


def test_noise_settings():
    assert from_function(torch.sin).noise_sigma == 0.05  # DPS's default
    assert from_function(torch.sin, noise_sigma=0.2).noise_sigma == 0.2
    assert isinstance(from_function(torch.sin, noise_sigma=None).noise, NoNoise)
    assert from_function(torch.sin, noise={"name": "poisson", "rate": 1.0}).noise_sigma is None


def test_float32_probe_tolerance():
    """The identity check runs in the measurement's dtype: float32 round-off passes, a 1% error does not."""
    M = dense().float()
    op = from_function(apply(M), linear=True, image_shape=SHAPE)
    assert op.adjoint(torch.zeros(1, 1, 1, 20)).dtype == torch.float32
    off = from_function(apply(M), adjoint=lambda y: 1.01 * (y.flatten(1) @ M).view(-1, *SHAPE), image_shape=SHAPE)
    with pytest.raises(ValueError, match="relative error"):
        off.adjoint(torch.zeros(1, 1, 1, 20))


MODULE = """
import torch
from operators import Operator, from_function


class Subsample(Operator):
    name = "subsample"

    def __init__(self, factor=2, noise=None):
        super().__init__(noise)
        self.factor = factor

    def forward(self, x):
        return x[..., :: self.factor, :: self.factor]


def make_saturation(gain=2.0):
    return from_function(lambda x: torch.tanh(gain * x), noise_sigma=0.01, name="saturation")


instance = Subsample(4)
not_an_operator = torch.nn.Identity()


def plain(x):
    return x
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module written in a temporary working directory (not on sys.path), under a name unique to the test."""
    name = f"user_ops_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.chdir(tmp_path)
    return name


def test_load_operator_from_the_working_directory(user_module):
    op = load_operator(f"{user_module}:Subsample", factor=2)
    assert op.name == "subsample" and op(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 4, 4)
    saturation = load_operator(f"{user_module}:make_saturation", gain=3.0)
    assert isinstance(saturation, FunctionOperator) and saturation.noise_sigma == 0.01
    torch.testing.assert_close(saturation(torch.full((1, 1, 2, 2), 0.1)), torch.full((1, 1, 2, 2), 0.1).mul(3).tanh())
    assert load_operator(f"{user_module}:instance").factor == 4


def test_load_operator_errors(user_module):
    for spec, message in (
        ("no_colon", "<module>:<name>"),
        ("a:b:c", "<module>:<name>"),
        ("surely_not_a_module_xyz:Op", "no module"),
        (f"{user_module}:Missing", "has no"),
    ):
        with pytest.raises(ValueError, match=message):
            load_operator(spec)
    with pytest.raises(ValueError, match="takes no arguments"):
        load_operator(f"{user_module}:instance", factor=2)
    with pytest.raises(TypeError, match="Operator"):
        load_operator(f"{user_module}:not_an_operator")
    with pytest.raises(TypeError, match="from_function"):
        load_operator(f"{user_module}:plain", x=torch.zeros(1))


def test_solvers_restore_with_a_wrapped_function():
    """A nonlinear function wrapped by from_function goes through DPS and DAPS on the shipped tiny prior (a few
    steps): finite restorations of the image shape that depend on the measurement."""
    import torch.nn.functional as F

    from imaging.shapes import ShapesDataset
    from priors.tiny import load_tiny_adm
    from solvers import DAPS, DPS

    op = from_function(lambda x: torch.tanh(2 * F.avg_pool2d(x, 2)), noise_sigma=0.05, name="pooled_tanh")
    prior = load_tiny_adm()
    x = ShapesDataset("test", n=2).tensor()  # (2, 3, 32, 32) in [-1, 1]
    y = op.measure(x, generator=[torch.Generator().manual_seed(s) for s in (1, 2)])
    for solver in (
        DPS(prior, op, zeta=1.0, num_steps=3, progress=False),
        DAPS(prior, op, lr=5e-5, num_steps=2, mcmc_steps=3, ode_steps=1, progress=False),
    ):
        seeds = [torch.Generator().manual_seed(s) for s in (3, 4)]
        x_hat = solver.restore(y, generator=seeds)
        assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
        other = solver.restore(-y, generator=[torch.Generator().manual_seed(s) for s in (3, 4)])
        assert (other - x_hat).abs().max() > 1e-3, type(solver).__name__
