"""Linear algebra shared by the operators' defaults: per-image conjugate gradients.

Every solver here acts per image: a batch of N gives the same numbers as N calls with one image each (each image
stops on its own residual; its later updates are masked).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .base import Operator

Linear = Callable[[Tensor], Tensor]

#: default bounds of the iterative solvers (``prox_l2`` and ``pinv``): iterations, and the relative residual
CG_MAX_ITER = 50
CG_TOL = 1e-6


def per_image(rho: float | Tensor, like: Tensor) -> Tensor:
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
    max_iter: int = CG_MAX_ITER,
    tol: float = CG_TOL,
) -> Tensor:
    """Solve apply(x) = b for a symmetric positive (semi-)definite ``apply``, per image of the batch.

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
    max_iter: int = CG_MAX_ITER,
    tol: float = CG_TOL,
    x_init: Tensor | None = None,
) -> Tensor:
    """(A^T A + rho I)^{-1} (A^T y + rho x0_hat) by (preconditioned) CG with the operator's exact adjoint,
    started from ``x_init`` (default x0_hat)."""
    rho = per_image(rho, x0_hat)
    b = op.adjoint(y) + rho * x0_hat
    x = x0_hat if x_init is None else x_init
    return conjugate_gradient(
        lambda v: op.adjoint(op(v)) + rho * v, b, x, precondition=precondition, max_iter=max_iter, tol=tol
    )


def pinv_cg(
    op: Operator,
    y: Tensor,
    *,
    precondition: Linear | None = None,
    max_iter: int = CG_MAX_ITER,
    tol: float = CG_TOL,
    x_init: Tensor | None = None,
) -> Tensor:
    """A least-squares solution of A x = y by CG on the normal equations A^T A x = A^T y.

    Unpreconditioned and started from 0 (the default), every iterate lies in range(A^T), so the limit is the
    minimum-norm least-squares solution A^+ y. A preconditioner or a start outside range(A^T) keeps the
    least-squares property but not minimality when A has a null space.
    """
    b = op.adjoint(y)
    x = torch.zeros_like(b) if x_init is None else x_init
    return conjugate_gradient(lambda v: op.adjoint(op(v)), b, x, precondition=precondition, max_iter=max_iter, tol=tol)
