"""FID: the Frechet distance against closed forms; the Inception loads from a local file or is unavailable."""

from unittest import mock

import numpy as np
import pytest
import torch

from evaluation import (
    INCEPTION,
    MetricResult,
    MetricUnavailable,
    feature_statistics,
    fid_between_files,
    frechet_distance,
    load_inception,
)
from imaging import save_image


def test_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.5, 2.0, 6), rng.uniform(0.5, 2.0, 6)
    # commuting covariances: Tr(S1 + S2 - 2 (S1 S2)^(1/2)) = sum (sqrt s1 - sqrt s2)^2
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


def test_scaled_full_covariance_closed_form():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 5))
    sigma = a @ a.T + np.eye(5)
    # sigma2 = 4 sigma: (sigma sigma2)^(1/2) = 2 sigma, so the trace term is Tr(sigma + 4 sigma - 4 sigma) = Tr(sigma)
    assert frechet_distance(np.zeros(5), sigma, np.ones(5), 4 * sigma) == pytest.approx(5 + np.trace(sigma), rel=1e-8)


def test_feature_statistics_are_mean_and_unbiased_covariance():
    features = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = feature_statistics(features)
    assert mu.tolist() == [2.0, 4.0]
    assert sigma.tolist() == [[4.0, 7.0], [7.0, 13.0]]  # divided by N - 1
    with pytest.raises(MetricUnavailable, match="at least 2"):
        feature_statistics(features[:1])


@pytest.mark.parametrize("n", [1, 2, 3])
def test_fid_below_four_images_is_unavailable_not_a_number(n):
    """1-3 images give covariances of rank 0-2 (and pytorch-fid a singular-product warning): no value, the reason."""
    from evaluation import fid_from_features

    rng = np.random.default_rng(n)
    with pytest.raises(MetricUnavailable, match=f"FID needs >= 4 images per set, got {n} and 30"):
        fid_from_features(rng.normal(size=(n, 3)), rng.normal(size=(30, 3)))


def test_distribution_metrics_from_files_say_how_many_images_they_need(tmp_path):
    """A run's FID / KID over 3 image pairs: both unavailable, stating N = 4; over 6 pairs on 128-d features: a FID
    flagged rank-deficient (6 <= 128), a KID with its std."""
    from PIL import Image

    from evaluation import distribution_between_files

    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        for kind in ("recon", "label"):
            path = tmp_path / f"{kind}{i}.png"
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    recon, label = paths[0::2], paths[1::2]
    few = distribution_between_files(recon[:3], label[:3], features="shapes")
    for name in ("fid", "kid"):
        assert few[name].value is None and "needs >= 4 images per set, got 3 and 3" in few[name].reason
    enough = distribution_between_files(recon, label, features="shapes")
    assert enough["kid"].value is not None and enough["kid"].details["std"] > 0
    assert enough["fid"].value is not None and "6 images <= 128 feature dims" in enough["fid"].details["rank_deficient"]


def test_missing_inception_weights_are_reported_not_faked(empty_torch_home, tmp_path):
    paths = [save_image(torch.zeros(3, 8, 8), tmp_path / f"{k}.png") for k in range(4)]  # enough images
    result = fid_between_files(paths, paths)
    assert isinstance(result, MetricResult) and not result.available and result.value is None
    expected_path = empty_torch_home / "hub" / "checkpoints" / INCEPTION.filename
    assert str(expected_path) in result.reason
    assert "metrics.fid.weights" in result.reason and INCEPTION.url in result.reason
    assert str(result).startswith("fid: unavailable: ")
    with pytest.raises(MetricUnavailable, match=r"not found at metrics\.fid\.weights="):
        load_inception(weights=tmp_path / "nope.pth")


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # 4 images, 64 dims: singular covariances
def test_fid_code_path_with_random_inception_weights(empty_torch_home, tmp_path):
    """Code-path test (random weights, not a real FID): the Inception is built from a local file, never downloaded."""
    from pytorch_fid import inception

    torch.set_num_threads(1)
    captured = {}
    original = torch.nn.Module.load_state_dict

    def capture(self, state_dict, *args, **kwargs):  # keep the randomly initialised weights as the "checkpoint"
        captured["state"] = {k: v.clone() for k, v in self.state_dict().items()}
        return original(self, captured["state"])

    with (
        mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(torch.nn.Module, "load_state_dict", capture),
    ):
        inception.fid_inception_v3()
    cache = empty_torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(captured["state"], cache / INCEPTION.filename)

    g = torch.Generator().manual_seed(0)
    a = [save_image(torch.rand(3, 16, 16, generator=g) * 2 - 1, tmp_path / f"a{k}.png") for k in range(4)]
    b = [save_image(torch.rand(3, 16, 16, generator=g) * 0.2, tmp_path / f"b{k}.png") for k in range(4)]
    with mock.patch("torch.hub.load_state_dict_from_url", side_effect=AssertionError("download attempted")):
        model = load_inception(dims=64)
        same = fid_between_files(a, a, model=model)
        different = fid_between_files(a, b, model=model)
    assert same.available and different.available
    assert abs(same.value) < 1e-3 * different.value
    assert different.value > 0
