"""Data proximal steps of DiffPIR (Zhu et al., CVPRW 2023, eq. 13):

    x0_data = argmin_x ||y - A x||^2 + rho ||x - x0_hat||^2 = (A^T A + rho I)^{-1} (A^T y + rho x0_hat)

``DataProximal(op)(y, x0_hat, rho)`` (or ``data_prox``) picks the solver for the operator:

- inpainting (A = diag(m), m binary): elementwise, (m y + rho x0_hat) / (m + rho), as the official code;
- super-resolution: exact and closed form. Our A x = D_h x D_w^T (antialiased bicubic with mirrored borders,
  ``operators/resize.py``) is conv + decimation only in the interior; its border rows fold mirrored taps back,
  so the paper's FFT formula (USRNet's, for *circular* conv + decimation) would solve a different problem at the
  borders. A^T A = (D_w^T D_w) kron (D_h^T D_h) is diagonalised by the eigenvectors of the two small Gram
  matrices: one (H x H) and one (W x W) eigendecomposition per operator, then four matmuls per step;
- blur: our blur pads by reflection (DPS), which no FFT diagonalises (the paper's code makes its measurement with
  ``mode='wrap'`` so that its FFT formula is exact). We run conjugate gradients on the exact A^T A + rho I,
  preconditioned by the FFT closed form of the same kernel with circular boundaries (``circular_blur_prox``);
  with ``max_iter=0`` the result is that FFT closed form alone, the paper's step;
- anything else: conjugate gradients with the operator's exact adjoint (``prox_cg``).

All solvers act per image: a batch of N gives the same numbers as N calls with one image each.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from operators import Blur, Inpainting, Operator, SuperResolution

Linear = Callable[[Tensor], Tensor]


def _per_image(rho: float | Tensor, like: Tensor) -> Tensor:
    """rho as a (B or 1, 1, 1, 1) tensor on ``like``'s device and dtype."""
    rho = torch.as_tensor(rho, device=like.device, dtype=like.dtype)
    return rho.reshape(-1, 1, 1, 1)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-image inner product, shape (B, 1, 1, 1)."""
    return (a * b).flatten(1).sum(dim=1).view(-1, 1, 1, 1)


def conjugate_gradient(
    apply: Linear,
    b: Tensor,
    x: Tensor,
    *,
    precondition: Linear | None = None,
    max_iter: int = 50,
    tol: float = 1e-6,
) -> Tensor:
    """Solve apply(x) = b for a symmetric positive definite ``apply``, per image of the batch.

    Preconditioned CG (Hestenes-Stiefel with M^{-1} = ``precondition``). Each image stops on its own when
    ||r|| <= tol ||b|| (its later updates are masked), so an image's result does not depend on the batch.
    """
    precondition = precondition or (lambda r: r)
    r = b - apply(x)
    z = precondition(r)
    p = z
    rz = _dot(r, z)
    b_norm = b.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    active = r.flatten(1).norm(dim=1).view(-1, 1, 1, 1) > tol * b_norm
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        Ap = apply(p)
        alpha = torch.where(active, rz / _dot(p, Ap).where(active, torch.ones_like(rz)), torch.zeros_like(rz))
        x = x + alpha * p
        r = r - alpha * Ap
        active = active & (r.flatten(1).norm(dim=1).view(-1, 1, 1, 1) > tol * b_norm)
        z = precondition(r)
        rz_new = _dot(r, z)
        beta = torch.where(active, rz_new / rz.where(active, torch.ones_like(rz)), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    return x


def prox_cg(
    op: Operator,
    y: Tensor,
    x0_hat: Tensor,
    rho: float | Tensor,
    *,
    precondition: Linear | None = None,
    max_iter: int = 50,
    tol: float = 1e-6,
    x_init: Tensor | None = None,
) -> Tensor:
    """(A^T A + rho I)^{-1} (A^T y + rho x0_hat) by (preconditioned) CG with the operator's exact adjoint."""
    rho = _per_image(rho, x0_hat)
    b = op.adjoint(y) + rho * x0_hat
    x = x0_hat if x_init is None else x_init
    return conjugate_gradient(
        lambda v: op.adjoint(op(v)) + rho * v, b, x, precondition=precondition, max_iter=max_iter, tol=tol
    )


def prox_inpainting(op: Inpainting, y: Tensor, x0_hat: Tensor, rho: float | Tensor) -> Tensor:
    """A = diag(m) with m binary, so A^T A = diag(m): x = (m y + rho x0_hat) / (m + rho)."""
    mask = op.mask.to(device=x0_hat.device, dtype=x0_hat.dtype)
    rho = _per_image(rho, x0_hat)
    return (op.adjoint(y) + rho * x0_hat) / (mask + rho)


def gram_eigen(op: SuperResolution, height: int, width: int, device: torch.device) -> tuple[Tensor, ...]:
    """Eigendecompositions (float64) of D_h^T D_h and D_w^T D_w: (evals_h, U_h, evals_w, U_w)."""
    like = torch.empty(0, dtype=torch.float64, device=device)
    d_h, d_w = op.matrices(height, width, like)
    evals_h, evecs_h = torch.linalg.eigh(d_h.T @ d_h)
    evals_w, evecs_w = torch.linalg.eigh(d_w.T @ d_w)
    return evals_h.clamp_min(0), evecs_h, evals_w.clamp_min(0), evecs_w


def prox_super_resolution(
    op: SuperResolution, y: Tensor, x0_hat: Tensor, rho: float | Tensor, eigen: tuple[Tensor, ...] | None = None
) -> Tensor:
    """Exact closed form for A x = D_h x D_w^T: in the eigenbases U_h, U_w of the Gram matrices,
    A^T A + rho I is diagonal with entries lambda_h[i] lambda_w[j] + rho. ``eigen``: ``gram_eigen``'s result."""
    height, width = x0_hat.shape[-2:]
    eigen = eigen if eigen is not None else gram_eigen(op, height, width, x0_hat.device)
    evals_h, evecs_h, evals_w, evecs_w = (v.to(x0_hat.dtype) for v in eigen)
    rho = _per_image(rho, x0_hat)
    b = op.adjoint(y) + rho * x0_hat
    coeffs = (evecs_h.T @ b @ evecs_w) / (evals_h[:, None] * evals_w[None, :] + rho)
    return evecs_h @ coeffs @ evecs_w.T


def circular_transfer(kernel: Tensor, height: int, width: int) -> Tensor:
    """FFT of the centred kernel, (B or 1, 1, H, W//2+1): the circular counterpart of ``Blur`` (a correlation:
    its transfer function is the conjugate of this, its adjoint's is this)."""
    k = kernel.shape[-1]
    padded = kernel.new_zeros(kernel.shape[0], 1, height, width)
    padded[..., :k, :k] = kernel[:, None]
    centred = torch.roll(padded, shifts=(-(k // 2), -(k // 2)), dims=(-2, -1))
    return torch.fft.rfft2(centred)


def circular_blur_solver(kernel: Tensor, rho: float | Tensor, like: Tensor) -> Linear:
    """rhs -> (B^H B + rho I)^{-1} rhs for B the circular correlation with ``kernel`` (B or 1, k, k), on images of
    ``like``'s size: the paper's FFT closed form (its denominator computed once)."""
    height, width = like.shape[-2:]
    transfer = circular_transfer(kernel.to(device=like.device, dtype=like.dtype), height, width)
    denominator = transfer.abs() ** 2 + _per_image(rho, like)
    return lambda rhs: torch.fft.irfft2(torch.fft.rfft2(rhs) / denominator, s=(height, width))


def circular_blur_prox(kernel: Tensor, rhs: Tensor, rho: float | Tensor) -> Tensor:
    """(B^H B + rho I)^{-1} rhs for B the circular correlation with ``kernel``: see ``circular_blur_solver``."""
    return circular_blur_solver(kernel, rho, rhs)(rhs)


def prox_blur(
    op: Blur, y: Tensor, x0_hat: Tensor, rho: float | Tensor, *, max_iter: int = 50, tol: float = 1e-6
) -> Tensor:
    """CG on the exact (reflect-padded) blur, preconditioned by the circular FFT closed form (see module doc)."""
    rho_t = _per_image(rho, x0_hat)
    precondition = circular_blur_solver(op.kernel, rho_t, x0_hat)
    x_init = precondition(op.adjoint(y) + rho_t * x0_hat)
    if max_iter == 0:
        return x_init
    return prox_cg(op, y, x0_hat, rho_t, precondition=precondition, max_iter=max_iter, tol=tol, x_init=x_init)


class DataProximal:
    """The data proximal step for one operator (dispatch: see the module doc), with what it can precompute
    (the SR Gram eigenbases) kept per image size. ``max_iter`` / ``tol`` bound the iterative solvers."""

    def __init__(self, operator: Operator, *, max_iter: int = 50, tol: float = 1e-6):
        self.operator = operator
        self.max_iter, self.tol = int(max_iter), float(tol)
        self._eigen: dict[tuple, tuple[Tensor, ...]] = {}

    def __call__(self, y: Tensor, x0_hat: Tensor, rho: float | Tensor) -> Tensor:
        """argmin_x ||y - A x||^2 + rho ||x - x0_hat||^2."""
        op = self.operator
        if isinstance(op, Inpainting):
            return prox_inpainting(op, y, x0_hat, rho)
        if isinstance(op, SuperResolution):
            key = (*x0_hat.shape[-2:], x0_hat.device)
            if key not in self._eigen:
                self._eigen[key] = gram_eigen(op, *key)
            return prox_super_resolution(op, y, x0_hat, rho, self._eigen[key])
        if isinstance(op, Blur):
            return prox_blur(op, y, x0_hat, rho, max_iter=self.max_iter, tol=self.tol)
        return prox_cg(op, y, x0_hat, rho, max_iter=self.max_iter, tol=self.tol)


def data_prox(
    op: Operator, y: Tensor, x0_hat: Tensor, rho: float | Tensor, *, max_iter: int = 50, tol: float = 1e-6
) -> Tensor:
    """argmin_x ||y - A x||^2 + rho ||x - x0_hat||^2 for a linear operator (one-off use of ``DataProximal``)."""
    return DataProximal(op, max_iter=max_iter, tol=tol)(y, x0_hat, rho)
