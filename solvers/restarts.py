"""Restarts: run a solver several times per image and keep, per image, the run whose measurement fits best.

DPS's paper (Chung et al., ICLR 2023) reports phase retrieval as the best of several independent samples (its
sampler is least stable there); DAPS runs it ``num_runs=4`` times (zhangbingliang2019/DAPS ``commands/pixel_ffhq.sh``)
and keeps the best by a metric against the ground truth. Here the choice needs no ground truth: restart k of
image b gives x_hat_k[b], and the kept one minimises the L2 norm of the measurement residual

    r_k[b] = || y[b] - A(x_hat_k[b]) ||_2          (A without noise; over every entry of the measurement)

the misfit DPS's data term measures (``torch.linalg.norm(measurement - A(x0_hat))``,
DPS2022/diffusion-posterior-sampling ``guided_diffusion/condition_methods.py``). Ties keep the earlier restart.
Each restart draws its noise from its own list of per-image generators (``generators[k][b]``), so a restart of one
image does not depend on the batch, and restart 0 with the run's usual generators is exactly one ``restore``.
Works for every registered solver: it calls only ``Solver.restore`` and the operator's forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from operators import Operator

from .chain import Solver, StepCallback


@dataclass
class BestOf:
    """The kept restoration per image and how it was chosen.

    x_hat: (B, C, H, W) images in [-1, 1], image b from restart ``best[b]``.
    best: the winning restart of each image (0-based).
    residuals: (restarts, B) float64 ||y - A(x_hat_k)||_2 of every restart and image.
    """

    x_hat: Tensor
    best: list[int]
    residuals: Tensor


def measurement_residual(operator: Operator, x_hat: Tensor, y: Tensor) -> Tensor:
    """||y[b] - A(x_hat[b])||_2 per image (B,), in float64, A applied without noise and without gradient."""
    with torch.no_grad():
        misfit = (y - operator(x_hat.to(y.dtype))).double()
    return torch.linalg.vector_norm(misfit.flatten(1), dim=1)


def restore_best_of(
    solver: Solver,
    y: Tensor,
    generators: Sequence[list[torch.Generator]],
    *,
    on_restart: Callable[[int, int], None] | None = None,
    callback: StepCallback | None = None,
    callback_every: int = 0,
) -> BestOf:
    """``solver.restore(y, generators[k])`` for each restart k; per image the restart with the smallest residual.

    ``generators``: one list of per-image generators per restart (``len(generators)`` restarts, >= 1).
    ``on_restart(k, n)`` runs before restart k of n (0-based), e.g. to label a progress bar; ``callback`` /
    ``callback_every`` are passed to every ``restore``.
    """
    if len(generators) < 1:
        raise ValueError("restore_best_of needs at least one restart (one list of generators)")
    operator = solver.operator
    if operator is None:
        raise ValueError("restarts choose by the measurement's residual: the solver needs an operator")
    n = len(generators)
    x_best: Tensor | None = None
    best_residual = torch.empty(0)
    best = torch.zeros(y.shape[0], dtype=torch.long)
    residuals = []
    for k, gens in enumerate(generators):
        if on_restart is not None:
            on_restart(k, n)
        x_k = solver.restore(y, gens, callback=callback, callback_every=callback_every)
        r_k = measurement_residual(operator, x_k, y).cpu()
        residuals.append(r_k)
        if x_best is None:
            x_best, best_residual = x_k, r_k
            continue
        better = r_k < best_residual  # strict: a tie keeps the earlier restart
        x_best = torch.where(better.to(x_k.device).view(-1, *[1] * (x_k.dim() - 1)), x_k, x_best)
        best_residual = torch.where(better, r_k, best_residual)
        best = torch.where(better, torch.full_like(best, k), best)
    assert x_best is not None
    return BestOf(x_best, best.tolist(), torch.stack(residuals))
