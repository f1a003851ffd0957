"""DiffPIR's data proximal step (Zhu et al., CVPRW 2023, eq. 13), now carried by each operator:

    x0_data = argmin_x ||y - A x||^2 + rho ||x - x0_hat||^2 = op.prox_l2(y, x0_hat, rho)

(closed forms for inpainting and super-resolution, FFT-preconditioned CG for blur, CG otherwise: see
``operators/`` and docs/operators.md). ``DataProximal`` and ``data_prox`` are kept as thin wrappers; the other
names re-export the operators' solvers.
"""

from __future__ import annotations

from torch import Tensor

from operators import Blur, Inpainting, Operator, SuperResolution
from operators.blur import circular_blur_prox, circular_blur_solver, circular_transfer
from operators.linalg import CG_MAX_ITER, CG_TOL, conjugate_gradient, prox_cg

#: the closed forms, called as ``prox_inpainting(op, y, x0_hat, rho)`` (the class's ``prox_l2``)
prox_inpainting = Inpainting.prox_l2
prox_super_resolution = SuperResolution.prox_l2
prox_blur = Blur.prox_l2


class DataProximal:
    """The data proximal step for one operator with fixed iteration bounds: ``op.prox_l2``."""

    def __init__(self, operator: Operator, *, max_iter: int = CG_MAX_ITER, tol: float = CG_TOL):
        self.operator = operator
        self.max_iter, self.tol = int(max_iter), float(tol)

    def __call__(self, y: Tensor, x0_hat: Tensor, rho: float | Tensor) -> Tensor:
        """argmin_x ||y - A x||^2 + rho ||x - x0_hat||^2."""
        return self.operator.prox_l2(y, x0_hat, rho, max_iter=self.max_iter, tol=self.tol)


def data_prox(
    op: Operator, y: Tensor, x0_hat: Tensor, rho: float | Tensor, *, max_iter: int = CG_MAX_ITER, tol: float = CG_TOL
) -> Tensor:
    """argmin_x ||y - A x||^2 + rho ||x - x0_hat||^2 for a linear operator: ``op.prox_l2``."""
    return op.prox_l2(y, x0_hat, rho, max_iter=max_iter, tol=tol)


__all__ = [
    "DataProximal",
    "circular_blur_prox",
    "circular_blur_solver",
    "circular_transfer",
    "conjugate_gradient",
    "data_prox",
    "prox_blur",
    "prox_cg",
    "prox_inpainting",
    "prox_super_resolution",
]
