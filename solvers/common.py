"""The data-term norms the gradient-based solvers (DPS, PSLD) share."""

from __future__ import annotations

from torch import Tensor


def residual_norm(y: Tensor, y_hat: Tensor) -> Tensor:
    """Per-sample ||y - y_hat||_2 (shape (B,)). DPS takes one norm over the whole batch, which couples
    the images (its issue #12); summing per-sample norms keeps image i's gradient its own."""
    return (y - y_hat).flatten(1).norm(dim=1)


def batch_norm(y: Tensor, y_hat: Tensor) -> Tensor:
    """||y - y_hat||_2 over the whole batch (a scalar): the references' loss, which couples the images."""
    return (y - y_hat).norm()
