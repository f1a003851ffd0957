"""The measurement-operator abstraction: y = A(x) + n."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .linalg import CG_MAX_ITER, CG_TOL, conjugate_gradient, pinv_cg, prox_cg
from .noise import GaussianNoise, NoiseModel, make_noise
from .random import Generators

#: what a solver may need from an operator (``Operator.capabilities``; ``SolverSpec.needs``): ``differentiable``:
#: a forward A(x) that autograd differentiates (every operator); ``linear``: A is linear with an exact adjoint
#: (``adjoint`` / ``transpose``); ``pinv``: A^+ y; ``prox_l2``: argmin_x ||y - A x||^2 + rho ||x - x0||^2
CAPABILITIES: tuple[str, ...] = ("differentiable", "linear", "pinv", "prox_l2")

#: what ``noise=`` accepts: a model, a config mapping such as ``{"name": "gaussian", "sigma": 0.05}``, or None
NoiseSpec = NoiseModel | Mapping[str, Any] | None


@dataclass(frozen=True)
class WeightsFile:
    """A weights file an operator reads (a learned forward model), for the runner's weights handling: what it is,
    its file name, where its publisher points to get it, its size and SHA-256 where known, and ``manual``: why the
    link is followed by hand rather than downloaded (None: a direct download)."""

    what: str
    filename: str
    url: str
    size_mb: float | None = None
    sha256: str | None = None
    manual: str | None = None


def as_noise_model(noise: NoiseSpec) -> NoiseModel:
    """A ``NoiseModel`` from ``noise=``: None is the DPS default (Gaussian, sigma 0.05 on [-1, 1])."""
    if noise is None:
        return GaussianNoise(0.05)
    if isinstance(noise, NoiseModel):
        return noise
    if isinstance(noise, Mapping):
        config = dict(noise)
        if "name" not in config:
            raise ValueError(f"a noise mapping needs a 'name' key ('gaussian', 'poisson', 'none'), got {config}")
        return make_noise(config.pop("name"), **config)
    raise TypeError(f"noise must be a NoiseModel, a mapping with a 'name' key, or None; got {type(noise).__name__}")


class Operator(nn.Module):
    """A measurement operator A on images (B, C, H, W) in [-1, 1], with a noise model attached.

    - ``op(x)`` is A x (differentiable, batched, device/dtype agnostic);
    - ``op.adjoint(y)`` is the exact adjoint A^T: <A x, y> = <x, A^T y>;
    - ``op.transpose(y)`` is the back-projection PSLD's gluing term uses (DPS's ``transpose``);
      it equals the adjoint unless a subclass documents otherwise;
    - ``op.measure(x, generator)`` is A x + n;
    - ``op.is_linear``: whether A is linear (the algebra below needs it);
    - ``op.noise_sigma``: the Gaussian noise std on the [-1, 1] scale (0.0 noiseless, None: not Gaussian);
    - ``op.prox_l2(y, x0, rho)`` = argmin_x ||y - A x||^2 + rho ||x - x0||^2;
    - ``op.pinv(y)`` = A^+ y, the minimum-norm least-squares solution of A x = y;
    - ``op.capabilities``: which of ``CAPABILITIES`` it offers (what solvers check before running).

    ``prox_l2`` and ``pinv`` default to conjugate gradients with the exact adjoint (``operators/linalg.py``),
    which always work for a linear operator; subclasses override them with their closed forms (docs/operators.md).

    Random parameters (masks, kernels) are drawn once, at construction, from explicit generators,
    and stored as buffers with a leading batch dimension (one per image, or 1 to broadcast).
    """

    #: registry name, set by subclasses
    name: str = "operator"

    #: the weights file the operator reads without an explicit path (None: none); ``scripts/fetch_weights.py`` lists it
    weights_file: ClassVar[WeightsFile | None] = None

    #: A is linear and ``adjoint`` is its exact adjoint. Conservative default: False for an operator without an
    #: adjoint; a subclass that defines ``adjoint`` is linear unless it sets ``is_linear`` itself (an adjoint
    #: exists only for a linear map). ``prox_l2`` and ``pinv``'s defaults refuse a nonlinear operator.
    is_linear: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "is_linear" not in cls.__dict__ and "adjoint" in cls.__dict__:
            cls.is_linear = True

    def __init__(self, noise: NoiseSpec = None):
        super().__init__()
        self.noise = as_noise_model(noise)

    # -- to implement -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # A x
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:  # A^T y
        raise NotImplementedError

    # -- provided (defaults that always work for a linear A; closed forms override them) -------
    @property
    def noise_sigma(self) -> float | None:
        """The measurement noise's Gaussian std on the [-1, 1] scale: 0.0 if noiseless, None if not Gaussian."""
        return self.noise.sigma

    @property
    def observed_mask(self) -> torch.Tensor | None:
        """The binary mask (1 = observed) of an operator that observes pixels unchanged and drops the others
        (inpainting), None otherwise: where a restoration may be pasted over by the measurement."""
        return None

    @property
    def capabilities(self) -> frozenset[str]:
        """What this operator offers solvers (``CAPABILITIES``): ``differentiable`` always; ``linear``, ``pinv`` and
        ``prox_l2`` when ``is_linear`` (the defaults below then work); ``pinv`` / ``prox_l2`` also when a nonlinear
        subclass overrides them. A subclass may override this property to say more or less."""
        offered = {"differentiable"}
        if self.is_linear:
            offered |= {"linear", "pinv", "prox_l2"}
        for name in ("pinv", "prox_l2"):
            if getattr(type(self), name) is not getattr(Operator, name):
                offered.add(name)
        return frozenset(offered)

    def prox_l2(
        self,
        y: torch.Tensor,
        x0: torch.Tensor,
        rho: float | torch.Tensor,
        *,
        max_iter: int = CG_MAX_ITER,
        tol: float = CG_TOL,
    ) -> torch.Tensor:
        """argmin_x ||y - A x||^2 + rho ||x - x0||^2 = (A^T A + rho I)^{-1} (A^T y + rho x0).

        ``rho``: a float or one per image. Default: conjugate gradients from x0 with the exact adjoint, per image,
        stopping at ``max_iter`` iterations or a relative residual ``tol``.
        """
        self._require_linear("prox_l2")
        return prox_cg(self, y, x0, rho, max_iter=max_iter, tol=tol)

    def pinv(
        self, y: torch.Tensor, *, max_iter: int = CG_MAX_ITER, tol: float = CG_TOL, rcond: float | None = None
    ) -> torch.Tensor:
        """A^+ y (Moore-Penrose): the minimum-norm least-squares solution of A x = y.

        ``rcond``: the truncated pseudo-inverse instead, singular values below ``rcond`` times the largest treated
        as 0 (``torch.linalg.pinv(A, rtol=rcond)``), where an operator knows its spectrum; None: A^+ itself.
        Default: conjugate gradients on the normal equations A^T A x = A^T y started from 0 (its iterates stay in
        range(A^T), so it converges to the minimum-norm solution), per image, bounded by ``max_iter`` / ``tol``.
        CG does not know the spectrum and ignores ``rcond``: its early stop (``max_iter``) is what regularises it.
        """
        self._require_linear("pinv")
        return pinv_cg(self, y, max_iter=max_iter, tol=tol)

    def solve_gram(
        self, v: torch.Tensor, r2: float, s2: float, *, max_iter: int = CG_MAX_ITER, tol: float = CG_TOL
    ) -> torch.Tensor:
        """(r2 A A^T + s2 I)^{-1} v in measurement space (PiGDM's noisy guidance; s2 > 0).

        Default: conjugate gradients from 0 with the exact adjoint, per image, bounded by ``max_iter`` / ``tol``.
        """
        self._require_linear("solve_gram")
        return conjugate_gradient(
            lambda u: r2 * self(self.adjoint(u)) + s2 * u, v, torch.zeros_like(v), max_iter=max_iter, tol=tol
        )

    def _require_linear(self, what: str) -> None:
        if not self.is_linear:
            raise NotImplementedError(
                f"{type(self).__name__}.{what}: the default needs a linear operator with an exact adjoint "
                "(is_linear is False); a nonlinear operator must override it"
            )

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        """Back-projection used by PSLD's gluing term; the adjoint unless overridden."""
        return self.adjoint(y)

    def measure(self, x: torch.Tensor, generator: Generators | None = None) -> torch.Tensor:
        """y = A(x) + n. ``generator``: one per image for batch-size-invariant noise."""
        return self.noise(self(x), generator)

    @staticmethod
    def check_image(x: torch.Tensor, what: str = "input") -> None:
        """Clear errors for the mistakes people make most: wrong rank, non-float tensors."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"{what} must have shape (B, C, H, W), got a tensor of rank {x.ndim} {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{what} must be a floating-point tensor in [-1, 1], got dtype {x.dtype}")

    @staticmethod
    def check_batch(x: torch.Tensor, param_batch: int, what: str) -> None:
        """Per-image parameters (B of them) apply to batches of B; a single one broadcasts."""
        if param_batch not in (1, x.shape[0]):
            raise ValueError(
                f"this operator holds {param_batch} {what} (one per image) but got a batch of {x.shape[0]}"
            )
