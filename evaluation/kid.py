"""KID (Binkowski et al. 2018): the unbiased squared MMD between two feature sets with the cubic polynomial kernel
k(a, b) = (a.b / D + 1)^3, averaged over random subsets; torch-fidelity's implementation.

Unlike FID, KID's estimator is unbiased, so it is meaningful for small sets (a few hundred images) and comparable
between sets of different sizes. The std over subsets says how much the estimate moves with the images drawn: a
difference between two KIDs smaller than it is not a difference. Subsets are drawn from an explicit seed.
"""

from __future__ import annotations

import numpy as np
import torch

from .result import MetricUnavailable

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


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
    """KID between two feature sets (N, D) and (M, D): (mean, std over ``subsets``, subset size used)."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    n = min(len(a), len(b))
    if a.ndim != 2 or b.ndim != 2 or n < 2:
        raise MetricUnavailable(f"KID needs at least 2 images per set, got {len(a)} and {len(b)}")
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
