"""What each registered solver declares it needs from an operator (``SolverSpec.needs``) is exactly what its step
asks of the operator: every solver restores a few steps through an operator that records each capability used."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from imaging import ShapesDataset
from operators import Operator, make_operator
from solvers import SOLVERS

GOLDEN = Path(__file__).with_name("test_golden.py")


def golden_module():
    """tests/solvers/test_golden.py: its ``CASES`` hold settings for every registered solver (it checks that)."""
    spec = importlib.util.spec_from_file_location("golden_cases", GOLDEN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations there
    spec.loader.exec_module(module)
    return module


class Recording(Operator):
    """Delegates to a linear ``inner`` operator and records what a solver used, in ``CAPABILITIES``' words:
    ``differentiable`` (A applied to a tensor that requires grad, under grad mode), ``linear`` (``adjoint`` or
    ``transpose``), ``pinv``, ``prox_l2``."""

    def __init__(self, inner: Operator):
        super().__init__(inner.noise)
        self.inner = inner
        self.used: set[str] = set()

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            self.used.add("differentiable")
        return self.inner(x)

    def adjoint(self, y):
        self.used.add("linear")
        return self.inner.adjoint(y)

    def transpose(self, y):
        self.used.add("linear")
        return self.inner.transpose(y)

    def pinv(self, y, **kwargs):
        self.used.add("pinv")
        return self.inner.pinv(y, **kwargs)

    def prox_l2(self, y, x0, rho, **kwargs):
        self.used.add("prox_l2")
        return self.inner.prox_l2(y, x0, rho, **kwargs)


@pytest.fixture(scope="module")
def golden():
    return golden_module()


@pytest.mark.parametrize("name", list(SOLVERS))
def test_needs_are_what_the_step_uses(name, golden):
    case = golden.CASES[name]
    prior = golden.load_prior(case.prior).to(torch.float32)
    op = Recording(make_operator("super_resolution", factor=4))
    x = ShapesDataset("test", n=1, size=32, start=3).tensor()
    y = op.measure(x, [torch.Generator().manual_seed(1)])
    op.used.clear()  # measuring is not the solver's use
    solver = SOLVERS[name].cls(
        prior, op, **case.step_sizes, num_steps=case.num_steps, pag=None, progress=False, **case.options
    )
    recon = solver.restore(y, [torch.Generator().manual_seed(2)])
    assert torch.isfinite(recon).all()
    spec = SOLVERS[name]
    assert set(spec.needs) <= op.used <= set(spec.needs | spec.uses_if_offered), f"{name} declares {sorted(spec.needs)}"


class Cube(Operator):
    """A nonlinear operator: y = x^3 (its forward only)."""

    def forward(self, x):
        return x**3


def test_build_refuses_an_operator_without_what_the_solver_needs(golden):
    prior = golden.load_prior("tiny_adm")
    with pytest.raises(ValueError, match=r"^solver=diffpir needs the proximal data step prox_l2") as info:
        SOLVERS["diffpir"].build(prior, Cube(), {"lam": 7.0, "zeta": 0.5}, num_steps=2, progress=False)
    assert "operator Cube does not offer (it offers: differentiable); solvers that can: dps" in str(info.value)
    solver = SOLVERS["dps"].build(prior, Cube(), {"zeta": 1.0}, num_steps=2, progress=False)
    assert solver.operator.capabilities == {"differentiable"}
