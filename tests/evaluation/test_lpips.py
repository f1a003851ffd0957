"""LPIPS: backbone weights from a local file or the hub cache, reported unavailable (with the reason) otherwise."""

import math

import pytest
import torch
import torchvision

from evaluation import BACKBONES, ImageScorer, MetricUnavailable, load_lpips, lpips_distance


def test_missing_backbone_is_unavailable_and_psnr_still_computed(empty_torch_home):
    scorer = ImageScorer(lpips_net="alex")
    assert scorer.lpips_model is None
    expected = empty_torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert str(expected) in scorer.lpips_reason and "metrics.lpips.weights" in scorer.lpips_reason
    x = torch.zeros(2, 3, 16, 16)
    rows = scorer(x, x + 0.5)
    assert [r["lpips"] for r in rows] == [None, None]
    assert rows[0]["lpips_note"].startswith("unavailable: ") and "alexnet-owt-7be5be79.pth" in rows[0]["lpips_note"]
    # scored as stored: 0 -> 128 and 0.5 -> 191 (8 bits), a difference of 63/255 on [0, 1]
    assert rows[0]["psnr"] == pytest.approx(-20 * math.log10(63 / 255), abs=1e-6)


def test_backbone_file_names_are_torchvisions():
    assert BACKBONES["alex"].url == torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
    assert BACKBONES["vgg"].url == torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    assert BACKBONES["alex"].url.endswith("/" + BACKBONES["alex"].filename)
    assert BACKBONES["vgg"].url.endswith("/" + BACKBONES["vgg"].filename)


def test_explicit_path_that_does_not_exist(tmp_path):
    with pytest.raises(MetricUnavailable, match=r"metrics\.lpips\.weights="):
        load_lpips("vgg", weights=tmp_path / "vgg.pth")


def test_lpips_code_path_with_random_backbone(empty_torch_home):
    """Code-path test (a randomly initialised AlexNet saved as the cached backbone: not real LPIPS values)."""
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None)
    cache = empty_torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(alexnet.state_dict(), cache / BACKBONES["alex"].filename)

    model = load_lpips("alex")  # from the hub cache, nothing downloaded
    assert torch.equal(getattr(model.net.slice1, "0").weight, alexnet.features[0].weight)
    assert torch.equal(getattr(model.net.slice5, "10").bias, alexnet.features[10].bias)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert lpips_distance(model, x, x).tolist() == pytest.approx([0.0, 0.0], abs=1e-7)
    d = lpips_distance(model, x, y)
    assert d.shape == (2,) and bool((d > 0).all())
    assert torch.allclose(d, lpips_distance(model, y, x), atol=1e-6)


def test_wrong_backbone_file_is_unavailable(tmp_path):
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(MetricUnavailable, match="not torchvision's alex"):
        load_lpips("alex", weights=tmp_path / "bad.pth")
