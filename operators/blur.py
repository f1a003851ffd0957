"""Blur operators y = k * x (DPS ``Blurkernel``): reflect padding of k // 2, then a depthwise cross-correlation.

One base class, ``Blur``, holds a kernel buffer (B or 1, k, k) and does the convolution and its exact adjoint;
``GaussianBlur`` and ``MotionBlur`` only build kernels: DPS's Gaussian recipe and a random-trajectory motion
kernel of the same family as LeviBorodenko's ``motionblur.Kernel``, drawn from explicit generators.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from .base import NoiseSpec, Operator
from .linalg import CG_MAX_ITER, CG_TOL, Linear, per_image, pinv_cg, prox_cg
from .random import Generators, parameter_generators, rand_scalar

BlurTranspose = Literal["identity", "adjoint"]
BlurMethod = Literal["auto", "conv", "fft"]

#: kernels at least this large are correlated by FFT under ``method="auto"`` (float32/float64 inputs):
#: a direct float64 61x61 depthwise conv takes seconds per image on a CPU, the FFT milliseconds.
FFT_MIN_KERNEL_SIZE = 16

#: inputs of these dtypes are blurred in float32 (by FFT for large kernels) and cast back, except with
#: ``method="conv"``: torch has no half-precision FFT on CPUs (and on GPUs only for powers of two), and the direct
#: conv of a 121x121 kernel at 512 px in float16 grew past 8 GB on a CPU without finishing in 10 minutes.
REDUCED_DTYPES = (torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------------------
def gaussian_window(sigma: float) -> torch.Tensor:
    """scipy.ndimage's 1-D Gaussian: radius int(4 sigma + 0.5) (``truncate=4``), normalised to sum 1, float64."""
    if sigma <= 0:
        raise ValueError(f"Gaussian sigma must be > 0, got {sigma}")
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    window = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return window / window.sum()


def gaussian_kernel(kernel_size: int = 61, sigma: float = 3.0) -> torch.Tensor:
    """DPS's Gaussian kernel, float64 (k, k): ``scipy.ndimage.gaussian_filter`` applied to a centred delta.

    gaussian_filter is separable, so the result is the outer product of one 1-D profile: the truncated
    Gaussian window centred at k // 2, with the taps that fall outside the k pixels folded back the way scipy's
    default ``mode="reflect"`` extends the array (d c b a | a b c d | d c b a); usually nothing falls outside.
    """
    _check_kernel_size(kernel_size)
    window = gaussian_window(sigma)
    radius = window.numel() // 2
    positions = torch.arange(-radius, radius + 1) + kernel_size // 2
    profile = torch.zeros(kernel_size, dtype=torch.float64).index_add_(
        0, symmetric_index(positions, kernel_size), window
    )
    return torch.outer(profile, profile)


def symmetric_index(index: torch.Tensor, length: int) -> torch.Tensor:
    """Fold indices into [0, length) by half-sample symmetric reflection (period 2 * length)."""
    folded = index % (2 * length)
    return torch.where(folded < length, folded, 2 * length - 1 - folded)


# The motion-kernel family of LeviBorodenko's ``motionblur.Kernel`` (DPS's motion blur), written from its algorithm:
#   1. path length  L = 0.75 * diag * (U(0, 1) + U(0, intensity^2)), diag = diagonal of the 2x supersampled grid;
#   2. step lengths ~ Beta(1, 30) * (1 - intensity + 0.1) * diag, only steps shorter than L, until their sum >= L;
#   3. a maximal angle M ~ U(0, intensity * pi) and a sign-flip probability ("jitter") ~ Beta(2, 20);
#      the first step's angle ~ U(-M, M), each later one |angle| ~ Triangular(0, intensity * M, M + 0.1) with the
#      previous angle's sign, flipped with probability jitter (angles are absolute directions, not turns);
#   4. the path (cumulative sum of the steps as complex numbers) is centred on its centre of mass, rotated by
#      U(0, pi) and placed at the centre of the grid;
#   5. it is rasterised on the 2x grid, blurred a little and downsampled for anti-aliasing, then normalised to 1.
# Deliberate differences: the reference rejects long steps in a loop, we draw them from the truncated Beta(1, 30)
# by inversion (the same distribution, bounded time); the path starts at the origin, so the first step is drawn too;
# the rasteriser is a bilinear splat of points every 1/4 pixel weighted by arc length, a Gaussian of std
# sqrt(r^2 + w^2 / 12) (the reference's blur radius r = int(0.01 diag) and line width w = int(diag / 150)) and a
# 2x2 area average, instead of PIL's line, GaussianBlur, LANCZOS resize and 8-bit grey levels.
_MOTION_EPS = 0.1


def _beta_integer(generator: torch.Generator, a: int, b: int) -> float:
    """Beta(a, b) for integer a, b: G_a / (G_a + G_b) with G_n a sum of n unit exponentials."""
    u = torch.rand(a + b, generator=generator, device=generator.device, dtype=torch.float64).cpu()
    exponentials = -torch.log1p(-u)  # -log(1 - U), U in [0, 1): finite
    return float(exponentials[:a].sum() / exponentials.sum())


def _triangular(generator: torch.Generator, left: float, mode: float, right: float) -> float:
    """Triangular(left, mode, right) by inverting its CDF."""
    u = rand_scalar(generator)
    span = right - left
    if u < (mode - left) / span:
        return left + math.sqrt(u * span * (mode - left))
    return right - math.sqrt((1 - u) * span * (right - mode))


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def motion_path(kernel_size: int, intensity: float, generator: torch.Generator) -> torch.Tensor:
    """The random trajectory (steps 1-4 above): (N, 2) float64 points (x = column, y = row) on the 2x grid.

    Grid pixel i covers [i, i + 1) along each axis, so the grid centre is (kernel_size, kernel_size).
    """
    diagonal = math.sqrt(2.0) * 2 * kernel_size

    # 1-2. step lengths (Beta(1, 30) restricted to steps < L, sampled by inverting its CDF 1 - (1 - t)^30)
    path_length = 0.75 * diagonal * (rand_scalar(generator) + rand_scalar(generator, 0.0, intensity**2))
    step_scale = (1.0 - intensity + _MOTION_EPS) * diagonal
    cdf_at_cap = 1.0 - (1.0 - min(path_length / step_scale, 1.0)) ** 30
    steps: list[float] = []
    total = 0.0
    while not steps or total < path_length:
        t = 1.0 - (1.0 - rand_scalar(generator) * cdf_at_cap) ** (1.0 / 30)
        steps.append(step_scale * t)
        total += steps[-1]

    # 3. angles: a random walk in direction whose spread grows with the intensity
    max_angle = rand_scalar(generator, 0.0, intensity * math.pi)
    jitter = _beta_integer(generator, 2, 20)
    angles = [rand_scalar(generator, -max_angle, max_angle)]
    while len(angles) < len(steps):
        magnitude = _triangular(generator, 0.0, intensity * max_angle, max_angle + _MOTION_EPS)
        flip = rand_scalar(generator) < jitter
        angles.append((-1 if flip else 1) * _sign(angles[-1]) * magnitude)

    # 4. complex path from the origin, centred on its centre of mass, randomly rotated, moved to the grid centre
    increments = torch.polar(torch.tensor(steps, dtype=torch.float64), torch.tensor(angles, dtype=torch.float64))
    path = torch.cat([torch.zeros(1, dtype=torch.complex128), increments.cumsum(0)])
    rotation = rand_scalar(generator, 0.0, math.pi)
    path = (path - path.mean()) * complex(math.cos(rotation), math.sin(rotation)) + complex(kernel_size, kernel_size)
    return torch.stack([path.real, path.imag], dim=1)


def _rasterise(points: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear splat of a polyline on a (size, size) grid, points every <= 1/4 pixel weighted by arc length."""
    starts, ends = points[:-1], points[1:]
    lengths = (ends - starts).norm(dim=1)
    counts = torch.ceil(lengths / 0.25).clamp(min=1).long()
    segment = torch.repeat_interleave(torch.arange(len(lengths)), counts)
    first = torch.cumsum(counts, 0) - counts
    t = (torch.arange(int(counts.sum())) - first[segment] + 0.5) / counts[segment]
    samples = starts[segment] + (ends - starts)[segment] * t[:, None]
    weights = (lengths / counts)[segment]
    if float(weights.sum()) == 0:  # a path of length 0 (intensity 0 can give one): a point
        samples, weights = points, torch.ones(len(points), dtype=torch.float64)

    coords = samples - 0.5  # pixel centres at i + 1/2
    base = torch.floor(coords)
    frac = coords - base
    base = base.long()
    grid = torch.zeros(size * size, dtype=torch.float64)
    for dx in (0, 1):
        for dy in (0, 1):
            col, row = base[:, 0] + dx, base[:, 1] + dy
            share = weights * (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
            inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)  # clipped like a drawing
            grid.index_add_(0, row[inside] * size + col[inside], share[inside])
    return grid.view(size, size)


def motion_kernel(kernel_size: int = 61, intensity: float = 0.5, *, generator: torch.Generator) -> torch.Tensor:
    """One random motion-blur kernel, float64 (k, k), non-negative, summing to 1 (see the notes above)."""
    _check_kernel_size(kernel_size)
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"motion-blur intensity must be in [0, 1], got {intensity}")
    size = 2 * kernel_size
    diagonal = math.sqrt(2.0) * size
    image = _rasterise(motion_path(kernel_size, intensity, generator), size)

    # thickness and softness of the reference's drawn line (line width w, Gaussian blur radius r)
    radius, width = int(0.01 * diagonal), int(diagonal / 150)
    sigma = math.sqrt(radius**2 + width**2 / 12)
    if sigma > 0:
        window = gaussian_window(sigma)
        pad = window.numel() // 2
        image = F.conv2d(image[None, None], window.view(1, 1, 1, -1), padding=(0, pad))
        image = F.conv2d(image, window.view(1, 1, -1, 1), padding=(pad, 0))[0, 0]
    kernel = image.view(kernel_size, 2, kernel_size, 2).mean(dim=(1, 3)).clamp(min=0)
    total = kernel.sum()
    if not total > 0:
        raise RuntimeError("the motion path left the kernel grid entirely; draw again with another generator")
    return kernel / total


def _check_kernel_size(kernel_size: int) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive integer (61, 121, ...), got {kernel_size!r}")


# --------------------------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------------------------
def reflect_index(length: int, pad: int, device: torch.device | None = None) -> torch.Tensor:
    """Source pixel of each position of a line reflect-padded by ``pad`` (``F.pad(mode="reflect")``: no edge
    repeat, ... x2 x1 | x0 x1 ... x_{n-1} | x_{n-2} ...)."""
    index = torch.arange(-pad, length + pad, device=device).abs()
    return torch.where(index > length - 1, 2 * (length - 1) - index, index)


def circular_transfer(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """FFT of the centred kernel, (B or 1, 1, H, W//2+1): the circular counterpart of ``Blur`` (a correlation:
    its transfer function is the conjugate of this, its adjoint's is this)."""
    k = kernel.shape[-1]
    padded = kernel.new_zeros(kernel.shape[0], 1, height, width)
    padded[..., :k, :k] = kernel[:, None]
    centred = torch.roll(padded, shifts=(-(k // 2), -(k // 2)), dims=(-2, -1))
    return torch.fft.rfft2(centred)


def circular_blur_solver(kernel: torch.Tensor, rho: float | torch.Tensor, like: torch.Tensor) -> Linear:
    """rhs -> (B^H B + rho I)^{-1} rhs for B the circular correlation with ``kernel`` (B or 1, k, k), on images of
    ``like``'s size: DiffPIR's FFT closed form (its denominator computed once)."""
    height, width = like.shape[-2:]
    transfer = circular_transfer(kernel.to(device=like.device, dtype=like.dtype), height, width)
    denominator = transfer.abs() ** 2 + per_image(rho, like)
    return lambda rhs: torch.fft.irfft2(torch.fft.rfft2(rhs) / denominator, s=(height, width))


def circular_blur_prox(kernel: torch.Tensor, rhs: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
    """(B^H B + rho I)^{-1} rhs for B the circular correlation with ``kernel``: see ``circular_blur_solver``."""
    return circular_blur_solver(kernel, rho, rhs)(rhs)


def circular_blur_pinv(kernel: torch.Tensor, y: torch.Tensor, rcond: float) -> torch.Tensor:
    """B^+ y for B the circular correlation with ``kernel`` (B or 1, k, k), through its transfer function T:
    y's spectrum times T / |T|^2 where |T| > rcond max |T| (per kernel), 0 elsewhere (the truncated pseudo-inverse,
    as ``torch.linalg.pinv(B, rtol=rcond)``: B's singular values are the |T|)."""
    height, width = y.shape[-2:]
    transfer = circular_transfer(kernel.to(device=y.device, dtype=y.dtype), height, width)
    gain = transfer.abs()
    keep = gain > rcond * gain.amax(dim=(-2, -1), keepdim=True)
    inverse = torch.where(keep, transfer / torch.where(keep, gain**2, torch.ones_like(gain)), 0)
    return torch.fft.irfft2(torch.fft.rfft2(y) * inverse, s=(height, width))


#: default relative threshold on the blur's (circular) singular values for ``Blur.pinv``
PINV_RCOND = 1e-6


class Blur(Operator):
    """A x = k ⋆ reflect_pad(x, k // 2): depthwise cross-correlation, the same kernel on every channel (DPS).

    ``kernel``: (k, k), or (B, k, k) for one kernel per image (k odd), kept as a buffer in the default dtype and
    cast to each input's dtype and device when used. The exact adjoint is the transposed
    correlation (a convolution onto the padded domain) followed by the adjoint of the reflect padding, which folds
    the padded borders back onto the interior pixels they were copied from.

    ``method``: ``"conv"`` uses a grouped ``conv2d`` (DPS's computation), ``"fft"`` the same correlation by FFT on
    the padded domain (exact up to rounding: no wrap-around reaches the kept pixels), ``"auto"`` the FFT for
    float32/float64 inputs and kernels of at least ``FFT_MIN_KERNEL_SIZE`` pixels, the conv otherwise.

    Half-precision inputs (``REDUCED_DTYPES``, e.g. a prior under fp16 autocast, as PSLD_PAG runs) are blurred in
    float32 with autocast off and cast back, so the cost does not depend on the precision.

    ``transpose``: ``"identity"`` (default) is DPS's ``transpose`` for blur (**quirk**: y itself, which PSLD's
    gluing term then uses); ``"adjoint"`` is the exact A^T.

    Algebra: the reflect padding makes A a matrix no FFT diagonalises (DiffPIR's code measures with circular
    boundaries, ``mode='wrap'``, so that its FFT formula is exact). ``prox_l2`` runs conjugate gradients on the
    exact A^T A + rho I, preconditioned by the FFT closed form of the same kernel with circular boundaries and
    started from it (``max_iter=0``: that FFT step alone, approximate near the borders). ``pinv`` does the same on
    the normal equations: started from the circular truncated pseudo-inverse (``circular_blur_pinv``, transfer
    function inverted where |T| > rcond max |T|), preconditioned by (|T|^2 + (rcond max |T|)^2)^{-1}. The iterations
    solve the exact normal equations, so they converge to A^+ y when the reflect-padded A has full rank (its
    singular values are not the |T|); ``rcond`` only regularises the start and the preconditioner, and on a
    badly conditioned A ``max_iter`` is what bounds the noise amplification. For a rank-deficient A the start and
    preconditioner can leave a null-space component: ``Operator.pinv`` (unpreconditioned, from 0) is min-norm.
    """

    name = "blur"
    is_linear = True

    def __init__(
        self,
        kernel: torch.Tensor,
        noise: NoiseSpec = None,
        transpose_mode: BlurTranspose = "identity",
        method: BlurMethod = "auto",
    ):
        super().__init__(noise)
        kernel = torch.as_tensor(kernel)
        if kernel.ndim == 2:
            kernel = kernel[None]
        if kernel.ndim != 3 or kernel.shape[-1] != kernel.shape[-2] or kernel.shape[-1] % 2 == 0:
            raise ValueError(f"blur kernel must be (k, k) or (B, k, k) with k odd, got {tuple(kernel.shape)}")
        if transpose_mode not in ("identity", "adjoint"):
            raise ValueError(f"transpose_mode must be 'identity' or 'adjoint', got {transpose_mode!r}")
        if method not in ("auto", "conv", "fft"):
            raise ValueError(f"method must be 'auto', 'conv' or 'fft', got {method!r}")
        self.transpose_mode, self.method = transpose_mode, method
        self.register_buffer("kernel", kernel.detach().to(torch.get_default_dtype()).clone())

    @property
    def kernel_size(self) -> int:
        return self.kernel.shape[-1]

    def _prepare(self, x: torch.Tensor, what: str) -> tuple[torch.Tensor, int, bool]:
        """Shape checks; the kernel in x's dtype/device, the padding, and whether to use the FFT."""
        self.check_image(x, what)
        self.check_batch(x, self.kernel.shape[0], "kernels")
        pad = self.kernel_size // 2
        if min(x.shape[-2:]) <= pad:
            raise ValueError(
                f"{what} of size {tuple(x.shape[-2:])} is too small for a {self.kernel_size}x{self.kernel_size} "
                f"kernel: reflect padding of {pad} needs each side > {pad}"
            )
        use_fft = self.method == "fft" or (
            self.method == "auto"
            and x.dtype in (torch.float32, torch.float64)
            and self.kernel_size >= FFT_MIN_KERNEL_SIZE
        )
        return self.kernel.to(device=x.device, dtype=x.dtype), pad, use_fft

    @staticmethod
    def _grouped_weight(kernel: torch.Tensor, batch: int, channels: int) -> torch.Tensor:
        # one group per (image, channel): per-image kernels in a single conv call
        k = kernel.shape[-1]
        return kernel[:, None].expand(batch, channels, k, k).reshape(batch * channels, 1, k, k)

    def _in_float32(self, apply, x: torch.Tensor) -> torch.Tensor:
        """``apply`` on x in float32 with autocast off, the result in x's dtype."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return apply(x.float()).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in REDUCED_DTYPES and self.method != "conv":
            return self._in_float32(self.forward, x)
        kernel, pad, use_fft = self._prepare(x, "input")
        batch, channels, height, width = x.shape
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        if use_fft:
            size = padded.shape[-2:]
            spectrum = torch.fft.rfft2(padded) * torch.fft.rfft2(kernel[:, None], s=size).conj()
            return torch.fft.irfft2(spectrum, s=size)[..., :height, :width]
        weight = self._grouped_weight(kernel, batch, channels)
        out = F.conv2d(padded.reshape(1, batch * channels, *padded.shape[-2:]), weight, groups=batch * channels)
        return out.view(batch, channels, height, width)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if y.dtype in REDUCED_DTYPES and self.method != "conv":
            return self._in_float32(self.adjoint, y)
        kernel, pad, use_fft = self._prepare(y, "measurement")
        batch, channels, height, width = y.shape
        size = (height + 2 * pad, width + 2 * pad)
        if use_fft:
            # zero-padded linear convolution onto the padded domain: the circular wrap only lands on zeros
            spectrum = torch.fft.rfft2(y, s=size) * torch.fft.rfft2(kernel[:, None], s=size)
            padded = torch.fft.irfft2(spectrum, s=size)
        else:
            weight = self._grouped_weight(kernel, batch, channels)
            padded = F.conv_transpose2d(y.reshape(1, batch * channels, height, width), weight, groups=batch * channels)
            padded = padded.view(batch, channels, *size)
        # adjoint of reflect padding: add every padded pixel back onto the pixel it copies
        rows = y.new_zeros(batch, channels, height, size[1]).index_add(-2, reflect_index(height, pad, y.device), padded)
        return y.new_zeros(batch, channels, height, width).index_add(-1, reflect_index(width, pad, y.device), rows)

    def prox_l2(
        self,
        y: torch.Tensor,
        x0: torch.Tensor,
        rho: float | torch.Tensor,
        *,
        max_iter: int = CG_MAX_ITER,
        tol: float = CG_TOL,
    ) -> torch.Tensor:
        """CG on the exact (reflect-padded) blur, preconditioned by and started from the circular FFT closed form
        (``max_iter=0``: the FFT closed form alone); see the class docstring."""
        rho_t = per_image(rho, x0)
        precondition = circular_blur_solver(self.kernel, rho_t, x0)
        x_init = precondition(self.adjoint(y) + rho_t * x0)
        if max_iter == 0:
            return x_init
        return prox_cg(self, y, x0, rho_t, precondition=precondition, max_iter=max_iter, tol=tol, x_init=x_init)

    def pinv(
        self, y: torch.Tensor, *, max_iter: int = CG_MAX_ITER, tol: float = CG_TOL, rcond: float | None = None
    ) -> torch.Tensor:
        """A^+ y by CG on the normal equations, started from and preconditioned by the circular transfer function
        at ``PINV_RCOND`` (``max_iter=0``: the circular truncated pseudo-inverse alone); see the class docstring.

        ``rcond`` given: the regularised pseudo-inverse (A^T A + delta I)^{-1} A^T y with delta = (rcond s_max)^2,
        s_max = max |T| the largest singular value (``prox_l2`` from 0): singular values s >> rcond s_max are inverted,
        those below are damped as s / delta instead of amplified as 1 / s, the smooth counterpart of a truncation at
        rcond. A hard truncation needs the SVD of the reflect-padded A, which no FFT gives; the circular blur's
        (``circular_blur_pinv``) does not match A at the borders, there I - B^+ A expands by up to 1 / rcond, and
        DDNM, which applies it at every step, diverged with it (tiny ADM, 61-pixel kernels); I - A^+_delta A =
        delta (A^T A + delta I)^{-1} never expands."""
        if rcond is not None:
            if not rcond > 0:
                raise ValueError(f"rcond must be > 0, got {rcond}")
            gain = circular_transfer(self.kernel.to(device=y.device, dtype=y.dtype), *y.shape[-2:]).abs()
            delta = (rcond * gain.amax(dim=(-2, -1))) ** 2
            return self.prox_l2(y, torch.zeros_like(y), delta.reshape(-1), max_iter=max_iter, tol=tol)
        rcond = PINV_RCOND
        x_init = circular_blur_pinv(self.kernel, y, rcond)
        if max_iter == 0:
            return x_init
        gain = circular_transfer(self.kernel.to(device=y.device, dtype=y.dtype), *y.shape[-2:]).abs()
        delta = (rcond * gain.amax(dim=(-2, -1))) ** 2
        precondition = circular_blur_solver(self.kernel, delta.reshape(-1), y)
        return pinv_cg(self, y, precondition=precondition, max_iter=max_iter, tol=tol, x_init=x_init)

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        """DPS's back-projection for blur, the identity, by default; see the class docstring."""
        if self.transpose_mode == "adjoint":
            return self.adjoint(y)
        self.check_image(y, "measurement")
        return y

    def extra_repr(self) -> str:
        return f"kernels={self.kernel.shape[0]}, kernel_size={self.kernel_size}, method={self.method!r}"


class GaussianBlur(Blur):
    """DPS Gaussian deblurring: 61x61 kernel (121 at 512 px), sigma 3.0, built as ``gaussian_kernel``."""

    name = "gaussian_blur"

    def __init__(
        self,
        kernel_size: int = 61,
        sigma: float = 3.0,
        noise: NoiseSpec = None,
        transpose_mode: BlurTranspose = "identity",
        method: BlurMethod = "auto",
    ):
        super().__init__(gaussian_kernel(kernel_size, sigma), noise=noise, transpose_mode=transpose_mode, method=method)
        self.sigma = float(sigma)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, " + super().extra_repr()


class MotionBlur(Blur):
    """DPS motion deblurring: a random-trajectory kernel (``motion_kernel``), 61x61, intensity 0.5.

    The kernel is drawn once, at construction: one per generator in a list (per image), or one shared by the
    batch from a single generator (DPS draws it unseeded: **quirk**, fixed here). ``kernel=`` gives it instead.
    """

    name = "motion_blur"

    def __init__(
        self,
        kernel_size: int = 61,
        intensity: float = 0.5,
        generator: Generators | None = None,
        kernel: torch.Tensor | None = None,
        noise: NoiseSpec = None,
        transpose_mode: BlurTranspose = "identity",
        method: BlurMethod = "auto",
    ):
        if kernel is None:
            generators = parameter_generators(generator, what="motion_blur (random trajectory kernel)")
            kernel = torch.stack([motion_kernel(kernel_size, intensity, generator=g) for g in generators])
        elif generator is not None:
            raise ValueError("motion_blur: pass either kernel= or generator=, not both")
        super().__init__(kernel, noise=noise, transpose_mode=transpose_mode, method=method)
        self.intensity = float(intensity)

    def extra_repr(self) -> str:
        return f"intensity={self.intensity}, " + super().extra_repr()
