"""KID and FID on features against closed forms and a direct double-loop computation."""

import numpy as np
import pytest
import scipy.linalg

from evaluation import (
    MetricUnavailable,
    fid_from_features,
    frechet_distance,
    kid_difference_from_features,
    kid_from_features,
)
from evaluation.kid import kid_subset_size


def cubic_kernel(a: np.ndarray, b: np.ndarray) -> float:
    """Binkowski et al.'s KID kernel k(a, b) = (a.b / d + 1)^3."""
    return (float(a @ b) / len(a) + 1) ** 3


def mmd2_unbiased_double_loop(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 estimator of Gretton et al. (2012, eq. 3 with m = n), term by term."""
    m = len(x)
    xx = sum(cubic_kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(cubic_kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(cubic_kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_the_double_loop_estimator():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.3, 1.5, size=(12, 5))
    # one subset of all 12 images: the estimator is invariant to the order the subset is drawn in
    mean, std, size = kid_from_features(x, y, subsets=1, subset_size=12)
    assert size == 12 and std == 0.0
    assert mean == pytest.approx(mmd2_unbiased_double_loop(x, y), rel=1e-10)


def test_kid_of_point_masses_is_the_closed_form():
    # every feature of set A is a, of set B is b: MMD^2 = k(a, a) + k(b, b) - 2 k(a, b), for any subset
    a, b = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.0, -0.5])
    mean, std, _ = kid_from_features(np.tile(a, (20, 1)), np.tile(b, (30, 1)), subsets=7, subset_size=10)
    expected = cubic_kernel(a, a) + cubic_kernel(b, b) - 2 * cubic_kernel(a, b)
    assert mean == pytest.approx(expected, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_zero_on_the_same_distribution_and_positive_on_a_shifted_one():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, same_std, size = kid_from_features(a, b, subsets=50, seed=3)
    assert size == 200  # default: min(1000, n // 2), so that subsets differ
    assert abs(same) < 2 * same_std
    shifted, shifted_std, _ = kid_from_features(a, b + 0.5, subsets=50, seed=3)
    assert shifted > 5 * shifted_std > 0


def test_kid_of_identical_sets_is_the_o_1_over_m_overlap_term():
    # X = Y (one subset of all m): (Kxx_offdiag + Kyy_offdiag) / (m (m - 1)) - 2 (Kxx_offdiag + Kxx_diag) / m^2
    # = (2 / m) (mean off-diagonal kernel - mean diagonal kernel): 0 up to O(1/m), where FID is exactly 0
    rng = np.random.default_rng(5)
    m = 300
    a = rng.normal(size=(m, 8))
    k = (a @ a.T / 8 + 1) ** 3
    off_diagonal, diagonal = (k.sum() - np.trace(k)) / (m * (m - 1)), np.trace(k) / m
    identical, _, _ = kid_from_features(a, a, subsets=1, subset_size=m)
    assert identical == pytest.approx(2 / m * (off_diagonal - diagonal), rel=1e-9)
    shifted, _, _ = kid_from_features(a, a + 0.5, subsets=1, subset_size=m)
    assert abs(identical) < 0.05 * shifted
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)


def test_kid_subset_draws_come_from_the_seed():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(60, 4))
    assert kid_from_features(a, b, seed=5) == kid_from_features(a, b, seed=5)
    assert kid_from_features(a, b, seed=5) != kid_from_features(a, b, seed=6)


def test_kid_subset_size_and_errors():
    assert kid_subset_size(10_000) == 1000
    assert kid_subset_size(64) == 32
    assert kid_subset_size(64, 500) == 64  # never more than the smaller set
    assert kid_subset_size(3) == 2
    with pytest.raises(MetricUnavailable, match="needs >= 4 images"):
        kid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="dimensions"):
        kid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))


def symmetric_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_closed_form(mu1, s1, mu2, s2) -> float:
    """Dowson & Landau (1982): |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1^(1/2) S2 S1^(1/2))^(1/2)) (symmetric form)."""
    r1 = symmetric_sqrt(s1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * symmetric_sqrt(r1 @ s2 @ r1)))


def random_covariance(rng, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.5 * np.eye(d)


def test_frechet_distance_of_non_commuting_covariances():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = random_covariance(rng, 4), random_covariance(rng, 4)
    assert not np.allclose(s1 @ s2, s2 @ s1)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_closed_form(mu1, s1, mu2, s2), rel=1e-8)


def test_fid_of_gaussian_feature_sets_approaches_the_analytic_distance():
    rng = np.random.default_rng(4)
    mu1, mu2 = rng.normal(size=3), rng.normal(size=3)
    s1, s2 = random_covariance(rng, 3), random_covariance(rng, 3)
    n = 200_000
    a = mu1 + rng.normal(size=(n, 3)) @ scipy.linalg.cholesky(s1)  # rows ~ N(mu1, s1) (upper factor: R^T R = s1)
    b = mu2 + rng.normal(size=(n, 3)) @ scipy.linalg.cholesky(s2)
    expected = frechet_closed_form(mu1, s1, mu2, s2)
    assert fid_from_features(a, b) == pytest.approx(expected, rel=0.02)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)


def test_paired_kid_difference_is_the_difference_of_double_loop_estimators():
    rng = np.random.default_rng(6)
    a, b, r = rng.normal(size=(10, 4)), rng.normal(0.4, 1.2, size=(10, 4)), rng.normal(size=(10, 4))
    # one subset of everything: exactly KID(a) - KID(b), nothing left to vary
    mean, std, size = kid_difference_from_features(a, b, r, subsets=1, subset_size=10)
    assert size == 10 and std == 0.0
    expected = mmd2_unbiased_double_loop(a, r) - mmd2_unbiased_double_loop(b, r)
    assert mean == pytest.approx(expected, rel=1e-10)


def test_paired_kid_difference_of_one_subset_matches_the_double_loop_on_the_drawn_rows():
    rng = np.random.default_rng(7)
    a, b, r = rng.normal(size=(30, 3)), rng.normal(size=(30, 3)) + 0.3, rng.normal(size=(40, 3))
    mean, _, size = kid_difference_from_features(a, b, r, subsets=1, subset_size=6, seed=11)
    draw = np.random.default_rng(11)  # the documented draw: image rows (shared by a and b), then reference rows
    i, j = draw.choice(30, 6, replace=False), draw.choice(40, 6, replace=False)
    expected = mmd2_unbiased_double_loop(a[i], r[j]) - mmd2_unbiased_double_loop(b[i], r[j])
    assert size == 6 and mean == pytest.approx(expected, rel=1e-10)


def test_paired_kid_difference_is_zero_for_the_same_set_and_tighter_than_unpaired_stds():
    rng = np.random.default_rng(8)
    r = rng.normal(size=(800, 8))
    a = rng.normal(size=(400, 8))
    assert kid_difference_from_features(a, a, r, subsets=20) == (0.0, 0.0, 200)
    # b: the same images moved towards a shifted distribution. Drawn independently, KID(b) - KID(a) would have the
    # std hypot(std_a, std_b); on paired subsets what both share cancels (measured: 0.71 of it here)
    b = a + 0.2
    mean, std, _ = kid_difference_from_features(b, a, r, subsets=100, seed=1)
    _, std_a, _ = kid_from_features(a, r, subsets=100, seed=1)
    _, std_b, _ = kid_from_features(b, r, subsets=100, seed=1)
    assert mean > 3 * std > 0
    assert std < 0.8 * np.hypot(std_a, std_b)


def test_paired_kid_difference_errors():
    with pytest.raises(ValueError, match="same shape"):
        kid_difference_from_features(np.zeros((5, 3)), np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="dimensions"):
        kid_difference_from_features(np.zeros((5, 3)), np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(MetricUnavailable, match="needs >= 4 images"):
        kid_difference_from_features(np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((5, 3)))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_kid_below_four_images_is_unavailable_not_a_number(n):
    """The unbiased MMD^2 divides by m (m - 1): subsets need m >= 2 images; the std over subsets means something
    only when subsets differ, n >= 2 m = 4. With 2 images every subset was the whole set (the issue's KID -1.37 ±
    0.00); now it says why there is no value."""
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=(n, 6)), rng.normal(size=(40, 6))
    with pytest.raises(MetricUnavailable) as info:
        kid_from_features(a, b)
    assert f"KID needs >= 4 images per set, got {n} and 40" in str(info.value)
    assert "subsets of >= 2 images" in str(info.value)


def test_kid_from_four_images_uses_distinct_subsets_of_two():
    """At the minimum, n = 4: subsets of m = 2 images, and the value over one subset is the double loop's."""
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    _, std, size = kid_from_features(a, b, subsets=20, seed=1)
    assert size == 2 and std > 0  # the subsets differ
    one, _, _ = kid_from_features(a, b, subsets=1, subset_size=4)
    assert one == pytest.approx(mmd2_unbiased_double_loop(a, b), rel=1e-10)
