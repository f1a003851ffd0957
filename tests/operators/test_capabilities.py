"""What an operator offers solvers (``Operator.capabilities``): everything when linear, only its forward when not,
plus what a nonlinear class overrides itself."""

from __future__ import annotations

import torch

from operators import CAPABILITIES, Operator, make_operator

#: the linear operators shipped with the tasks, with the arguments they need here
LINEAR = {
    "box_inpaint": {"image_size": 32, "hole": 8, "margin": 2, "generator": torch.Generator().manual_seed(0)},
    "random_inpaint": {"generator": torch.Generator().manual_seed(0)},
    "super_resolution": {"factor": 4},
    "gaussian_blur": {"kernel_size": 5, "sigma": 1.0},
    "motion_blur": {"kernel_size": 5, "generator": torch.Generator().manual_seed(0)},
}


class Square(Operator):
    """A nonlinear operator: y = x^2."""

    name = "square"

    def forward(self, x):
        return x * x


class SquareWithProx(Square):
    """y = x^2 with a proximal step of its own (a stand-in: only that the class overrides it matters here)."""

    def prox_l2(self, y, x0, rho, **kwargs):
        return x0


def test_linear_operators_offer_everything():
    for name, kwargs in LINEAR.items():
        op = make_operator(name, **kwargs)
        assert op.is_linear, name
        assert op.capabilities == {"differentiable", "linear", "pinv", "prox_l2"}, name


def test_nonlinear_operator_offers_its_forward_only():
    assert not Square.is_linear
    assert Square().capabilities == {"differentiable"}


def test_a_nonlinear_override_is_offered():
    assert SquareWithProx().capabilities == {"differentiable", "prox_l2"}


def test_capabilities_use_the_documented_words():
    assert set(CAPABILITIES) == {"differentiable", "linear", "pinv", "prox_l2"}
