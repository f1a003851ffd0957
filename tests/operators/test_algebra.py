"""Every operator's algebra against dense linear algebra on 12x12 images in float64.

The dense matrix of A is built column by column from ``forward`` alone (A e_j for each basis image e_j); then
``adjoint`` is checked by the inner-product identity, ``prox_l2`` against the dense solve
(A^T A + rho I)^{-1} (A^T y + rho x0), ``pinv`` against ``torch.linalg.pinv`` and A A^+ A = A, each for the
operator's own method (its closed form where it has one) and for the conjugate-gradient default of the base class
(``Operator.prox_l2(op, ...)``, ``Operator.pinv(op, ...)``). A dense-matrix operator with a null space, defined
here, has only the defaults.
"""

from __future__ import annotations

import pytest
import torch

from operators import (
    OPERATORS,
    GaussianNoise,
    NoNoise,
    Operator,
    PoissonNoise,
    generators_from_seeds,
    make_operator,
)
from operators.blur import circular_blur_pinv

SHAPE = (3, 12, 12)
D = 3 * 12 * 12
#: small-size settings of every registered operator (a new operator must be added here)
SETTINGS = {
    "box_inpaint": lambda seeds: dict(image_size=12, hole=5, margin=1, generator=generators_from_seeds(seeds)),
    "random_inpaint": lambda seeds: dict(image_size=12, generator=generators_from_seeds(seeds)),
    "super_resolution": lambda seeds: dict(factor=2),
    "gaussian_blur": lambda seeds: dict(kernel_size=5, sigma=1.0),
    "motion_blur": lambda seeds: dict(kernel_size=5, generator=generators_from_seeds(seeds)),
}
#: tight CG bounds so that the iterative solvers reach float64 accuracy
EXACT = dict(max_iter=1000, tol=1e-15)


class DenseOperator(Operator):
    """A x = M vec(x) for a dense (m, D) matrix M of rank < m (a null space and a non-trivial range): no closed
    form, so ``prox_l2`` and ``pinv`` are the conjugate-gradient defaults."""

    name = "dense"

    def __init__(self, seed: int = 0, m: int = 100, rank: int = 80):
        super().__init__(GaussianNoise(0.1))
        g = torch.Generator().manual_seed(seed)
        u, _ = torch.linalg.qr(torch.randn(m, rank, generator=g, dtype=torch.float64))
        v, _ = torch.linalg.qr(torch.randn(D, rank, generator=g, dtype=torch.float64))
        singular = torch.linspace(0.2, 2.0, rank, dtype=torch.float64)
        self.register_buffer("matrix", u @ torch.diag(singular) @ v.T)

    # one matrix-vector product per image: BLAS rounding then does not depend on the batch size
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.matrix @ xi.flatten() for xi in x]).view(x.shape[0], 1, 1, -1)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.matrix.T @ yi.flatten() for yi in y]).view(y.shape[0], *SHAPE)


def build(name: str, seeds=(0,)) -> Operator:
    if name == "dense":
        return DenseOperator()
    if name not in SETTINGS:
        pytest.fail(f"operator {name!r} is registered but has no small-size settings in this test")
    return make_operator(name, **SETTINGS[name](list(seeds))).double()


def dense_matrix(op: Operator) -> torch.Tensor:
    """(m, D): column j is A e_j, from ``forward`` alone."""
    basis = torch.eye(D, dtype=torch.float64).view(D, *SHAPE)
    with torch.no_grad():
        return op(basis).flatten(1).T.contiguous()


def random_images(seed: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, *SHAPE, generator=g, dtype=torch.float64) * 2 - 1 for _ in range(2))


#: the linear registered operators (the algebra below needs A^T); nonlinear ones: tests/operators/test_nonlinear.py
LINEAR = sorted(name for name, cls in OPERATORS.items() if cls.is_linear)
NAMES = [*LINEAR, "dense"]


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    op = build(request.param)
    return op, dense_matrix(op)


def test_every_operator_is_linear_and_dense_operator_inherits_it():
    for name in LINEAR:
        assert build(name).is_linear is True, name
    assert DenseOperator.is_linear is True  # it defines an adjoint
    assert Operator.is_linear is False  # no adjoint, no algebra

    class Clip(Operator):  # nonlinear: no adjoint, so no default algebra
        def forward(self, x):
            return x.clamp(-0.5, 0.5)

    clip = Clip(noise=NoNoise())
    assert clip.is_linear is False
    with pytest.raises(NotImplementedError, match="linear"):
        clip.prox_l2(torch.zeros(1, *SHAPE), torch.zeros(1, *SHAPE), 1.0)
    with pytest.raises(NotImplementedError, match="linear"):
        clip.pinv(torch.zeros(1, *SHAPE))


def test_noise_sigma():
    assert build("gaussian_blur").noise_sigma == 0.05  # the DPS default
    assert make_operator("super_resolution", factor=2, noise={"name": "gaussian", "sigma": 0.2}).noise_sigma == 0.2
    assert make_operator("super_resolution", factor=2, noise=NoNoise()).noise_sigma == 0.0
    assert make_operator("super_resolution", factor=2, noise=PoissonNoise(1.0)).noise_sigma is None


def test_adjoint_is_the_transposed_matrix(case):
    op, A = case
    x, _ = random_images(1)
    y = torch.randn(op(x).shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    # inner-product identity <A x, y> = <x, A^T y>, per image
    lhs = (op(x) * y).flatten(1).sum(1)
    rhs = (x * op.adjoint(y)).flatten(1).sum(1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    # and A^T y is the dense transpose applied to y
    torch.testing.assert_close(op.adjoint(y).flatten(1), y.flatten(1) @ A, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["own", "default"])
@pytest.mark.parametrize("rho", [0.05, [0.3, 4.0]])
def test_prox_l2_is_the_dense_solve(case, method, rho):
    op, A = case
    x, x0 = random_images(3)
    y = op(x) + 0.1 * torch.randn(op(x).shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rhos = torch.tensor(rho if isinstance(rho, list) else [rho, rho], dtype=torch.float64)
    expected = torch.stack(
        [
            torch.linalg.solve(A.T @ A + r * torch.eye(D, dtype=torch.float64), A.T @ yi.flatten() + r * xi.flatten())
            for yi, xi, r in zip(y, x0, rhos)
        ]
    ).view_as(x0)
    rho_arg = torch.tensor(rho, dtype=torch.float64) if isinstance(rho, list) else rho
    prox = op.prox_l2 if method == "own" else (lambda *a, **k: Operator.prox_l2(op, *a, **k))
    got = prox(y, x0, rho_arg, **EXACT)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9 / min(float(rhos.min()), 1.0))


@pytest.mark.parametrize("method", ["own", "default"])
def test_pinv_is_the_dense_pseudo_inverse(case, method):
    op, A = case
    x, _ = random_images(5)
    # y outside the range of A (noise): A^+ y is the minimum-norm least-squares solution
    y = op(x) + 0.1 * torch.randn(op(x).shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    expected = (y.flatten(1) @ torch.linalg.pinv(A, rtol=1e-8).T).view_as(x)
    pinv = op.pinv if method == "own" else (lambda *a, **k: Operator.pinv(op, *a, **k))
    got = pinv(y, **EXACT)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-8 * expected.abs().max())
    # A A^+ A = A, on random images
    torch.testing.assert_close(op(pinv(op(x), **EXACT)), op(x), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_batch_invariance_with_per_image_parameters(name):
    """Per-image masks / kernels and per-image rho: each image equals its own single-image solve, for the
    operator's method and the CG default, at the default (loose) CG bounds, where an image that stopped at
    another iteration would differ by ~tol."""
    both = build(name, seeds=(0, 1))
    x, x0 = random_images(7)
    y = both(x) + 0.05 * torch.randn(both(x).shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    rho = torch.tensor([0.02, 2.0], dtype=torch.float64)
    for prox, pinv in ((type(both).prox_l2, type(both).pinv), (Operator.prox_l2, Operator.pinv)):
        batch_prox, batch_pinv = prox(both, y, x0, rho), pinv(both, y)
        for i in range(2):
            alone = build(name, seeds=(i,)) if name != "dense" else both
            sl = slice(i, i + 1)
            torch.testing.assert_close(batch_prox[sl], prox(alone, y[sl], x0[sl], rho[i]), rtol=0, atol=1e-12)
            torch.testing.assert_close(batch_pinv[sl], pinv(alone, y[sl]), rtol=0, atol=1e-12)


def test_closed_forms_by_hand():
    """Inpainting: A^+ y = m * y; SR: A^+ y = D_h^+ y (D_w^+)^T from the 1-D matrices."""
    op = make_operator("box_inpaint", image_size=12, hole=4, position=(2, 3))
    y = torch.full((1, 3, 12, 12), 0.7)
    hole = torch.zeros(12, 12, dtype=torch.bool)
    hole[2:6, 3:7] = True
    out = op.pinv(op(y))
    assert (out[..., hole] == 0).all() and (out[..., ~hole] == 0.7).all()

    from operators.resize import downsampling_matrix

    sr = make_operator("super_resolution", factor=2).double()
    y = torch.randn(1, 1, 6, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    d_h, d_w = downsampling_matrix(12, 2), downsampling_matrix(8, 2)
    torch.testing.assert_close(sr.pinv(y)[0, 0], torch.linalg.pinv(d_h) @ y[0, 0] @ torch.linalg.pinv(d_w).T)


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


@pytest.mark.parametrize("rcond", [1e-6, 0.3])
def test_circular_blur_pinv_is_the_truncated_pseudo_inverse(rcond):
    """Blur's transfer-function formula (``pinv(max_iter=0)``'s start) is exact for circular boundaries, with
    singular values below rcond * max dropped as ``torch.linalg.pinv(rtol=rcond)``."""
    kernel = make_operator("motion_blur", kernel_size=5, generator=generators_from_seeds([6])).kernel[0].double()
    B = circular_correlation_matrix(kernel, 10, 8)
    y = torch.randn(1, 1, 10, 8, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    expected = (torch.linalg.pinv(B, rtol=rcond) @ y.flatten()).view_as(y)
    torch.testing.assert_close(circular_blur_pinv(kernel[None], y, rcond), expected, rtol=0, atol=1e-10)


def test_blur_pinv_fft_start_is_approximate_and_iterations_make_it_exact():
    op = build("gaussian_blur")
    A = dense_matrix(op)
    x, _ = random_images(11)
    y = op(x)
    expected = (y.flatten(1) @ torch.linalg.pinv(A, rtol=1e-8).T).view_as(x)
    fft_only = op.pinv(y, max_iter=0)
    assert (fft_only - expected).abs().max() > 1e-3  # the reflect-padded borders differ from the circular blur
    torch.testing.assert_close(op.pinv(y, **EXACT), expected, rtol=0, atol=1e-8 * expected.abs().max())


@pytest.mark.parametrize("rcond", [3e-2, 0.3])
def test_blur_pinv_with_rcond_is_the_tikhonov_filtered_pseudo_inverse(rcond):
    """``Blur.pinv(rcond=)`` (DDNM's A^+) is V diag(s / (s^2 + delta)) U^T y from the SVD of the dense
    reflect-padded blur, delta = (rcond s_max)^2, s_max = the kernel's sum (its transfer function at 0, a
    non-negative kernel); it suppresses the small singular values the exact A^+ amplifies."""
    op = build("gaussian_blur")
    A = dense_matrix(op)
    U, s, Vh = torch.linalg.svd(A, full_matrices=False)
    delta = (rcond * op.kernel.double().sum()) ** 2
    x, _ = random_images(12)
    y = op(x) + 0.05 * torch.randn(op(x).shape, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    expected = (y.flatten(1) @ (Vh.T @ torch.diag(s / (s**2 + delta)) @ U.T).T).view_as(x)
    got = op.pinv(y, rcond=rcond, **EXACT)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9 * expected.abs().max())
    assert s.min() < rcond * s.max()  # something is damped: the filter differs from the exact A^+
    assert op.pinv(y, **EXACT).norm() > 1.5 * got.norm()
    with pytest.raises(ValueError, match="rcond"):
        op.pinv(y, rcond=0.0)
