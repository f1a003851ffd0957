"""DiffPIR's data proximal steps argmin ||y - A x||^2 + rho ||x - x0||^2 against a dense linear solve."""

import pytest
import torch

from operators import make_operator
from operators.random import generators_from_seeds
from priors import linear_operator_matrix
from solvers.proximal import (
    DataProximal,
    circular_blur_prox,
    conjugate_gradient,
    prox_blur,
    prox_cg,
    prox_inpainting,
    prox_super_resolution,
)

SHAPE = (3, 12, 12)


def dense_prox(A: torch.Tensor, y: torch.Tensor, x0: torch.Tensor, rho: float) -> torch.Tensor:
    """(A^T A + rho I)^{-1} (A^T y + rho x0) by a dense solve, image by image (float64)."""
    d = A.shape[1]
    lhs = A.T @ A + rho * torch.eye(d, dtype=torch.float64)
    rhs = y.flatten(1).double() @ A + rho * x0.flatten(1).double()
    return torch.linalg.solve(lhs, rhs.T).T.reshape(x0.shape)


def operators():
    gens = generators_from_seeds([0])
    return {
        "box_inpaint": make_operator("box_inpaint", image_size=12, hole=5, margin=1, generator=gens),
        "random_inpaint": make_operator("random_inpaint", image_size=12, generator=generators_from_seeds([1])),
        "super_resolution": make_operator("super_resolution", factor=2),
        "gaussian_blur": make_operator("gaussian_blur", kernel_size=5, sigma=1.0),
        "motion_blur": make_operator("motion_blur", kernel_size=7, generator=generators_from_seeds([2])),
    }


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, *SHAPE, generator=g, dtype=torch.float64) * 2 - 1
    x0 = torch.rand(1, *SHAPE, generator=g, dtype=torch.float64) * 2 - 1
    return x, x0


@pytest.mark.parametrize("name", list(operators()))
@pytest.mark.parametrize("rho", [1e-3, 0.3, 20.0])
def test_prox_is_the_dense_solution(name, rho, images):
    torch.set_default_dtype(torch.float64)
    op = operators()[name].double()
    x, x0 = images
    y = op.measure(x, generators_from_seeds([4]))
    A = linear_operator_matrix(op, SHAPE)
    expected = dense_prox(A, y, x0, rho)
    got = DataProximal(op, max_iter=200, tol=1e-12)(y, x0, rho)
    # the system's condition number is up to ~1 / rho: so is the error of either solve
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9 / min(rho, 1.0))
    # the optimality condition, independently of the dense solve: A^T (A x - y) + rho (x - x0) = 0
    grad = op.adjoint(op(got) - y) + rho * (got - x0)
    assert grad.abs().max() < 1e-8


def test_closed_forms_are_exact_without_iterations(images):
    """Inpainting and SR need no iterations; CG on the same problems converges to them."""
    torch.set_default_dtype(torch.float64)
    x, x0 = images
    ops = operators()
    for name in ("box_inpaint", "super_resolution"):
        op = ops[name].double()
        y = op.measure(x, generators_from_seeds([5]))
        closed = prox_inpainting(op, y, x0, 0.5) if name == "box_inpaint" else prox_super_resolution(op, y, x0, 0.5)
        iterative = prox_cg(op, y, x0, 0.5, max_iter=300, tol=1e-13)
        torch.testing.assert_close(closed, iterative, rtol=0, atol=1e-9)


def test_inpainting_closed_form_by_hand():
    """The official code's formula: (m y + rho x0) / (m + rho): y where observed (rho -> 0), x0 in the hole."""
    op = make_operator("box_inpaint", image_size=12, hole=4, position=(2, 3))
    y, x0 = torch.full((1, 3, 12, 12), 0.8), torch.full((1, 3, 12, 12), -0.4)
    out = prox_inpainting(op, op(y), x0, 0.25)
    hole = torch.zeros(12, 12, dtype=torch.bool)
    hole[2:6, 3:7] = True
    torch.testing.assert_close(out[..., hole], torch.full_like(out[..., hole], -0.4))
    torch.testing.assert_close(out[..., ~hole], torch.full_like(out[..., ~hole], (0.8 + 0.25 * -0.4) / 1.25))


def circular_correlation_matrix(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Dense matrix of out[i, j] = sum_{u, v} k[u, v] x[(i + u - p) mod H, (j + v - p) mod W] (one channel)."""
    k = kernel.shape[-1]
    p = k // 2
    basis = torch.eye(height * width, dtype=torch.float64).view(-1, height, width)
    out = torch.zeros_like(basis)
    for u in range(k):
        for v in range(k):
            out += kernel[u, v] * torch.roll(basis, shifts=(p - u, p - v), dims=(-2, -1))
    return out.flatten(1).T


def test_circular_fft_prox_is_the_paper_closed_form():
    """The FFT formula solves the circular problem exactly (what the paper assumes)."""
    torch.set_default_dtype(torch.float64)
    kernel = make_operator("motion_blur", kernel_size=5, generator=generators_from_seeds([6])).kernel[0].double()
    B = circular_correlation_matrix(kernel, 10, 8)
    g = torch.Generator().manual_seed(7)
    y, x0 = torch.randn(1, 1, 10, 8, generator=g), torch.randn(1, 1, 10, 8, generator=g)
    expected = dense_prox(B, y, x0, 0.05)
    rhs = (y.flatten(1) @ B).view(1, 1, 10, 8) + 0.05 * x0
    torch.testing.assert_close(circular_blur_prox(kernel[None], rhs, 0.05), expected, rtol=0, atol=1e-10)


def test_blur_prox_fft_only_differs_at_the_borders(images):
    """max_iter=0 gives the FFT step alone: right in the interior, off near the reflected borders."""
    torch.set_default_dtype(torch.float64)
    op = operators()["gaussian_blur"].double()
    x, x0 = images
    y = op.measure(x, generators_from_seeds([8]))
    exact = prox_blur(op, y, x0, 0.01, max_iter=200, tol=1e-12)
    fft_only = prox_blur(op, y, x0, 0.01, max_iter=0)
    error = (fft_only - exact).abs()
    assert error[..., 4:-4, 4:-4].max() < 0.1 * error.max()
    assert error.max() > 1e-3


def test_conjugate_gradient_per_image_and_batch_invariant():
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(9)
    M = torch.randn(20, 20, generator=g)
    spd = M @ M.T + 0.5 * torch.eye(20)
    b = torch.randn(3, 1, 4, 5, generator=g)
    apply = lambda v: (v.flatten(1) @ spd).view_as(v)  # noqa: E731
    batch = conjugate_gradient(apply, b, torch.zeros_like(b), max_iter=100, tol=1e-12)
    torch.testing.assert_close(batch.flatten(1), torch.linalg.solve(spd, b.flatten(1).T).T, rtol=0, atol=1e-9)
    # loose tolerance: each image stops on its own, so batching does not change any image's iterate
    loose = conjugate_gradient(apply, b, torch.zeros_like(b), max_iter=100, tol=1e-2)
    for i in range(3):
        alone = conjugate_gradient(apply, b[i : i + 1], torch.zeros_like(b[i : i + 1]), max_iter=100, tol=1e-2)
        torch.testing.assert_close(loose[i : i + 1], alone, rtol=0, atol=1e-12)


def test_per_image_operators_and_rho():
    """One mask per image and one rho per image: each image equals its own single-image solve."""
    torch.set_default_dtype(torch.float64)
    op = make_operator("random_inpaint", image_size=12, generator=generators_from_seeds([1, 2]))
    g = torch.Generator().manual_seed(10)
    y, x0 = torch.randn(2, 3, 12, 12, generator=g), torch.randn(2, 3, 12, 12, generator=g)
    rho = torch.tensor([0.1, 3.0])
    both = prox_inpainting(op, op(y), x0, rho)
    for i in range(2):
        single = make_operator("random_inpaint", image_size=12, generator=generators_from_seeds([1 + i]))
        alone = prox_inpainting(single, single(y[i : i + 1]), x0[i : i + 1], rho[i])
        torch.testing.assert_close(both[i : i + 1], alone)
