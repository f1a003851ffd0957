"""KID (Binkowski et al. 2018): the unbiased squared MMD between two feature sets with the cubic polynomial kernel
k(a, b) = (a.b / D + 1)^3, averaged over random subsets; torch-fidelity's implementation.

Unlike FID, KID's estimator is unbiased, so it is meaningful for small sets (a few hundred images) and comparable
between sets of different sizes. The std over subsets says how much the estimate moves with the images drawn: a
difference between two KIDs smaller than it is not a difference, unless the two sets are paired (restorations of the
same measurements): ``kid_difference_from_features`` draws the same subsets for both and gives the std of the
difference itself (torch-fidelity has no paired form). Subsets are drawn from an explicit seed.
"""

from __future__ import annotations

import numpy as np
import torch

from .result import MetricUnavailable

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
#: fewest images per set: the unbiased MMD^2 divides by m (m - 1), so a subset needs m >= 2 images, and the std over
#: subsets says something only when subsets differ, which needs n >= 2 m = 4 (with fewer, every subset is the whole
#: set: a KID of -1.37 "± 0.00" from 2 images)
KID_MIN_IMAGES = 4


def too_few_images(metric: str, n_a: int, n_b: int, minimum: int, why: str) -> MetricUnavailable:
    """``<metric> unavailable: needs >= <minimum> images per set, got <n_a> and <n_b> (<why>)``."""
    return MetricUnavailable(f"{metric} needs >= {minimum} images per set, got {n_a} and {n_b} ({why})")


KID_WHY = "the unbiased MMD^2 needs subsets of >= 2 images, and its std needs subsets that differ"


def kid_subset_size(n: int, subset_size: int | None = None) -> int:
    """``subset_size`` (at most ``n``), or by default min(1000, n // 2): subsets that differ from each other, so
    that their spread says something about the estimate (with subsets of all ``n`` images it would be 0)."""
    if subset_size is None:
        subset_size = min(KID_SUBSET_SIZE, n // 2)
    return max(2, min(int(subset_size), n))


def kid_from_features(
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int | None = None,
    seed: int = 0,
) -> tuple[float, float, int]:
    """KID between two feature sets (N, D) and (M, D): (mean, std over ``subsets``, subset size used);
    ``MetricUnavailable`` below ``KID_MIN_IMAGES`` per set."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    n = min(len(a), len(b))
    if a.ndim != 2 or b.ndim != 2 or n < KID_MIN_IMAGES:
        raise too_few_images("KID", len(a), len(b), KID_MIN_IMAGES, KID_WHY)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    size = kid_subset_size(n, subset_size)
    out = kid_features_to_metric(
        torch.from_numpy(a),
        torch.from_numpy(b),
        kid_subsets=subsets,
        kid_subset_size=size,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,  # 1 / D
        kid_kernel_poly_coef0=1,
        rng_seed=seed,
        verbose=False,
    )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD]), size


def _mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3, m = n) from the three kernel matrices of one subset."""
    m = len(k_xx)
    off = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(off - 2 * k_xy.mean())


def kid_difference_from_features(
    features_a: np.ndarray,
    features_b: np.ndarray,
    reference: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int | None = None,
    seed: int = 0,
) -> tuple[float, float, int]:
    """KID(a) - KID(b) against one ``reference`` for *paired* sets: row i of ``features_a`` and of ``features_b``
    come from the same image (e.g. one measurement restored with and without PAG). Every subset takes the same
    images from both sets and the same reference images, so what the two KIDs share -- which images and reference
    images were drawn -- cancels, and the std over subsets is the std of the difference itself: a difference larger
    than it holds across the images drawn, even where each KID's own std (``kid_from_features``) is larger.

    Returns (mean difference, its std over ``subsets``, subset size); the kernel and the estimator are KID's (cubic
    polynomial, unbiased MMD^2), so with one subset of everything the difference is exactly KID(a) - KID(b)."""
    a, b, r = (np.asarray(f, dtype=np.float64) for f in (features_a, features_b, reference))
    if a.shape != b.shape:
        raise ValueError(f"paired feature sets must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim != 2 or r.ndim != 2 or min(len(a), len(r)) < KID_MIN_IMAGES:
        raise too_few_images("KID", len(a), len(r), KID_MIN_IMAGES, KID_WHY)
    if a.shape[1] != r.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {r.shape[1]}")
    size = kid_subset_size(min(len(a), len(r)), subset_size)
    rng = np.random.default_rng(seed)
    d = a.shape[1]

    def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x @ y.T / d + 1) ** 3

    differences = []
    for _ in range(subsets):
        i = rng.choice(len(a), size, replace=False)
        j = rng.choice(len(r), size, replace=False)
        k_rr = kernel(r[j], r[j])  # the reference term is shared: it cancels, but keeps each MMD^2 whole
        mmd_a = _mmd2_unbiased(kernel(a[i], a[i]), k_rr, kernel(a[i], r[j]))
        mmd_b = _mmd2_unbiased(kernel(b[i], b[i]), k_rr, kernel(b[i], r[j]))
        differences.append(mmd_a - mmd_b)
    return float(np.mean(differences)), float(np.std(differences)), size
