"""Every registered operator: <A x, y> = <x, A^T y> in float64, and autograd agrees with the adjoint."""

import pytest
import torch

from operators import OPERATORS, Blur, generators_from_seeds, make_operator

SIZES = (256, 512)
#: operators with an adjoint (the nonlinear ones have none: tests/operators/test_nonlinear.py)
LINEAR = sorted(name for name, cls in OPERATORS.items() if cls.is_linear)


def build(name: str, size: int, batch: int):
    """The paper settings at 256 px (DPS) and 512 px (PSLD), with per-image random parameters."""
    generators = generators_from_seeds(range(batch))
    kernel_size = 61 if size == 256 else 121
    configs = {
        "box_inpaint": dict(image_size=size, generator=generators),
        "random_inpaint": dict(image_size=size, generator=generators),
        "super_resolution": dict(factor=4 if size == 256 else 8),
        "gaussian_blur": dict(kernel_size=kernel_size, sigma=3.0),
        "motion_blur": dict(kernel_size=kernel_size, intensity=0.5, generator=generators),
    }
    if name not in configs:
        pytest.fail(f"operator {name!r} is registered but has no configuration in this generic adjointness test")
    return make_operator(name, **configs[name])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", LINEAR)
def test_adjoint_inner_products(name: str, size: int) -> None:
    batch = 2
    op = build(name, size, batch)
    g = torch.Generator().manual_seed(123)
    x = torch.rand(batch, 3, size, size, generator=g, dtype=torch.float64) * 2 - 1
    ax = op(x)
    assert ax.dtype == torch.float64
    y = torch.randn(ax.shape, generator=g, dtype=torch.float64)
    aty = op.adjoint(y)
    assert aty.shape == x.shape
    lhs, rhs = (ax * y).sum(), (x * aty).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-12, atol=1e-10), (lhs.item(), rhs.item())


@pytest.mark.parametrize("name", LINEAR)
def test_adjoint_equals_autograd_vjp(name: str) -> None:
    """A second computation of A^T y: the gradient of <A x, y> with respect to x (autograd of forward)."""
    op = build(name, 256, batch=2)
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 256, 256, generator=g, dtype=torch.float64).requires_grad_()
    ax = op(x)
    y = torch.randn(ax.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad((ax * y).sum(), x)
    torch.testing.assert_close(op.adjoint(y), grad, rtol=1e-10, atol=1e-12)


def test_direct_convolution_path_is_adjoint() -> None:
    """The grouped-conv2d path (DPS's computation) with per-image kernels, checked apart from the FFT path."""
    g = torch.Generator().manual_seed(0)
    op = Blur(torch.rand(2, 15, 15, generator=g), method="conv")
    x = torch.randn(2, 3, 40, 33, generator=g, dtype=torch.float64)
    y = torch.randn(2, 3, 40, 33, generator=g, dtype=torch.float64)
    lhs, rhs = (op(x) * y).sum(), (x * op.adjoint(y)).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-12), (lhs.item(), rhs.item())


@pytest.mark.parametrize("name", LINEAR)
def test_float32_in_float32_out_and_broadcast_parameters(name: str) -> None:
    """A single generator draws one parameter set that serves a batch of any size, in the input's dtype."""
    g = torch.Generator().manual_seed(0)
    small = {
        "box_inpaint": dict(image_size=64, hole=32, margin=4, generator=g),
        "random_inpaint": dict(image_size=64, generator=g),
        "super_resolution": dict(factor=4),
        "gaussian_blur": dict(kernel_size=15, sigma=2.0),
        "motion_blur": dict(kernel_size=15, generator=g),
    }
    op = make_operator(name, **small[name])
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    y = op(x)
    assert y.dtype == torch.float32
    for i in range(3):  # the same operator on every image of the batch
        torch.testing.assert_close(y[i : i + 1], op(x[i : i + 1]))
    assert op.adjoint(y).shape == x.shape
    assert op.transpose(y).shape == x.shape
