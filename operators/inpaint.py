"""Inpainting operators: y = m * x with a binary mask m (1 = observed), as in DPS (box and random-pixel masks)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Literal

import torch

from .base import NoiseSpec, Operator
from .linalg import CG_MAX_ITER, CG_TOL, per_image
from .random import Generators, parameter_generators, rand_scalar

InpaintTranspose = Literal["identity", "adjoint"]


def as_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``256`` or ``(H, W)`` -> ``(H, W)``."""
    size = (image_size, image_size) if isinstance(image_size, numbers.Integral) else tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return (int(size[0]), int(size[1]))


class Inpainting(Operator):
    """A x = m * x for a fixed binary mask buffer ``mask`` of shape (B or 1, 1, H, W), 1 = observed.

    A is diagonal, so its exact adjoint is A itself (A^T y = m * y), and its algebra is elementwise:
    ``pinv`` is m * y (m binary: m^+ = m), ``prox_l2`` is (m y + rho x0) / (m + rho) (DiffPIR's official code).

    ``transpose`` (PSLD's back-projection A^T y in its gluing term):
      - ``"identity"`` (default): DPS's ``InpaintingOperator.transpose`` returns y unchanged (**quirk**, kept so
        PSLD reproduces). On a measurement in the range of A (zero in the hole) it equals m * y; on a noisy
        measurement it keeps the noise that ``measure`` put in the hole.
      - ``"adjoint"``: m * y, which drops the hole's noise.
    """

    name = "inpainting"
    is_linear = True

    def __init__(self, mask: torch.Tensor, noise: NoiseSpec = None, transpose_mode: InpaintTranspose = "identity"):
        super().__init__(noise)
        if transpose_mode not in ("identity", "adjoint"):
            raise ValueError(f"transpose_mode must be 'identity' or 'adjoint', got {transpose_mode!r}")
        self.transpose_mode = transpose_mode
        mask = torch.as_tensor(mask)
        if mask.ndim == 2:
            mask = mask[None, None]
        elif mask.ndim == 3:
            mask = mask[:, None]
        if mask.ndim != 4 or mask.shape[1] != 1:
            raise ValueError(f"mask must have shape (H, W), (B, H, W) or (B, 1, H, W), got {tuple(mask.shape)}")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must be binary (1 = observed, 0 = missing)")
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))

    def _mask_for(self, x: torch.Tensor, what: str) -> torch.Tensor:
        self.check_image(x, what)
        if x.shape[-2:] != self.mask.shape[-2:]:
            raise ValueError(f"{what} has size {tuple(x.shape[-2:])} but the mask is {tuple(self.mask.shape[-2:])}")
        self.check_batch(x, self.mask.shape[0], "masks")
        return self.mask.to(device=x.device, dtype=x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._mask_for(x, "input")

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self._mask_for(y, "measurement")

    @property
    def observed_mask(self) -> torch.Tensor:
        return self.mask

    def prox_l2(
        self,
        y: torch.Tensor,
        x0: torch.Tensor,
        rho: float | torch.Tensor,
        *,
        max_iter: int = CG_MAX_ITER,
        tol: float = CG_TOL,
    ) -> torch.Tensor:
        """Closed form: A^T A = diag(m), so x = (m y + rho x0) / (m + rho); ``max_iter`` / ``tol`` are unused."""
        mask = self.mask.to(device=x0.device, dtype=x0.dtype)
        rho = per_image(rho, x0)
        return (self.adjoint(y) + rho * x0) / (mask + rho)

    def pinv(
        self, y: torch.Tensor, *, max_iter: int = CG_MAX_ITER, tol: float = CG_TOL, rcond: float | None = None
    ) -> torch.Tensor:
        """Closed form: A^+ = diag(m)^+ = diag(m) (m binary), so A^+ y = m * y; ``max_iter`` / ``tol`` are unused,
        and so is ``rcond`` (the singular values are 0 or 1: any rcond < 1 truncates exactly the zeros)."""
        return self.adjoint(y)

    def solve_gram(
        self, v: torch.Tensor, r2: float, s2: float, *, max_iter: int = CG_MAX_ITER, tol: float = CG_TOL
    ) -> torch.Tensor:
        """Closed form: A A^T = diag(m), so (r2 A A^T + s2 I)^{-1} v = v / (r2 m + s2); ``max_iter`` / ``tol``
        are unused."""
        return v / (r2 * self._mask_for(v, "measurement") + s2)

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        """DPS's back-projection (identity) by default; see the class docstring."""
        if self.transpose_mode == "identity":
            self._mask_for(y, "measurement")  # same shape checks as the adjoint
            return y
        return self.adjoint(y)


class BoxInpainting(Inpainting):
    """DPS box inpainting: one square hole of side ``hole``, at least ``margin`` pixels from every border.

    With ``position=None`` the top-left corner is drawn like DPS's ``random_sq_bbox``: top and left uniform over
    ``[margin, size - margin - hole)`` (upper bound exclusive, as ``np.random.randint``), top first.
    ``position=(top, left)`` (or one pair per image) fixes it instead.
    ``hole`` defaults to half the shorter side: 128 at 256 px (DPS), 256 at 512 px (PSLD).
    """

    name = "box_inpaint"

    def __init__(
        self,
        image_size: int | Sequence[int] = 256,
        hole: int | None = None,
        margin: int = 16,
        position: Sequence[int] | Sequence[Sequence[int]] | None = None,
        generator: Generators | None = None,
        noise: NoiseSpec = None,
        transpose_mode: InpaintTranspose = "identity",
    ):
        height, width = as_image_size(image_size)
        hole = min(height, width) // 2 if hole is None else int(hole)
        margin = int(margin)
        if hole < 1 or margin < 0:
            raise ValueError(f"hole must be >= 1 and margin >= 0, got hole={hole}, margin={margin}")

        if position is None:
            # randint(margin, size - margin - hole) must be a non-empty range
            if min(height, width) <= hole + 2 * margin:
                raise ValueError(
                    f"image {height}x{width} is too small for a {hole}x{hole} hole with margin {margin}: "
                    f"need each side > hole + 2 * margin = {hole + 2 * margin}"
                )
            positions = [
                (
                    int(torch.randint(margin, height - margin - hole, (), generator=g, device=g.device)),
                    int(torch.randint(margin, width - margin - hole, (), generator=g, device=g.device)),
                )
                for g in parameter_generators(generator, what="box_inpaint (random hole position)")
            ]
        else:
            if generator is not None:
                raise ValueError("box_inpaint: pass either position= or generator=, not both")
            pairs = [position] if isinstance(position[0], numbers.Integral) else list(position)
            positions = [(int(top), int(left)) for top, left in pairs]
            for top, left in positions:
                if not (0 <= top <= height - hole and 0 <= left <= width - hole):
                    raise ValueError(
                        f"a {hole}x{hole} hole at (top, left)=({top}, {left}) does not fit a {height}x{width} image"
                    )

        mask = torch.ones(len(positions), 1, height, width)
        for mask_i, (top, left) in zip(mask, positions):
            mask_i[:, top : top + hole, left : left + hole] = 0
        super().__init__(mask, noise=noise, transpose_mode=transpose_mode)
        self.hole, self.margin = hole, margin
        #: (B or 1, 2) top-left corners (top, left) of the holes
        self.register_buffer("positions", torch.tensor(positions, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"hole={self.hole}, margin={self.margin}, positions={self.positions.tolist()}"


class RandomInpainting(Inpainting):
    """DPS random inpainting: per image p ~ U(prob_range), exactly int(H * W * p) pixels dropped.

    The dropped pixels are the first int(H * W * p) of a ``torch.randperm`` (sampling without replacement, as
    DPS's ``np.random.choice(..., replace=False)``), the same pixels on every channel.
    """

    name = "random_inpaint"

    def __init__(
        self,
        image_size: int | Sequence[int] = 256,
        prob_range: Sequence[float] = (0.3, 0.7),
        generator: Generators | None = None,
        noise: NoiseSpec = None,
        transpose_mode: InpaintTranspose = "identity",
    ):
        height, width = as_image_size(image_size)
        low, high = (float(p) for p in prob_range)
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"prob_range must satisfy 0 <= low <= high <= 1, got {tuple(prob_range)}")
        num_pixels = height * width
        probs, masks = [], []
        for g in parameter_generators(generator, what="random_inpaint (random pixel mask)"):
            p = rand_scalar(g, low, high)
            dropped = torch.randperm(num_pixels, generator=g, device=g.device)[: int(num_pixels * p)]
            mask = torch.ones(num_pixels)
            mask[dropped.cpu()] = 0
            probs.append(p)
            masks.append(mask.view(1, height, width))
        super().__init__(torch.stack(masks), noise=noise, transpose_mode=transpose_mode)
        #: the drawn drop probabilities p, one per mask (float64 Python floats, exact)
        self.drop_probs: tuple[float, ...] = tuple(probs)
        self.prob_range = (low, high)

    def extra_repr(self) -> str:
        return f"prob_range={self.prob_range}, drop_probs={[round(p, 4) for p in self.drop_probs]}"
