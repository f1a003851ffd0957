"""The shipped shapes feature network: strict loading, its stated held-out accuracy on freshly rendered images,
and the extractors FID/KID use."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open

from evaluation import SHAPES_FEATURES, MetricUnavailable, load_extractor, load_shapes_net
from imaging.shapes import KINDS, TEXTURES, render_shapes, render_shapes_labelled, shapes_seed


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads(SHAPES_FEATURES.with_suffix(".json").read_text())


def test_shipped_network_loads_strictly(meta):
    net = load_shapes_net()
    with safe_open(str(SHAPES_FEATURES), framework="pt") as f:
        stored = set(f.keys())
    assert stored == set(net.state_dict())  # strict: no missing, no unexpected tensors
    assert net.feature_dim == meta["feature_dim"] == 128
    assert SHAPES_FEATURES.stat().st_size < 5e6  # a few MB in the repository


def test_shipped_network_reaches_its_stated_heldout_accuracy(meta):
    torch.set_num_threads(1)
    check, heldout = meta["check"], meta["heldout"]["accuracy"]
    n = check["images"]
    images, labels = [], []
    for i in range(check["start"], check["start"] + n):  # rendered now, not read from any cache
        image, label = render_shapes_labelled(shapes_seed(check["split"], i))
        images.append(torch.from_numpy(image).permute(2, 0, 1) * 2 - 1)
        labels.append(label)
    with torch.no_grad():
        logits = load_shapes_net()(torch.stack(images))
    hue_sextants = logits["top_hue"].shape[1]

    def presence(values, names) -> torch.Tensor:
        return torch.tensor([[float(name in v) for name in names] for v in values])

    accuracy = {
        "texture": np.mean([TEXTURES[k] == lb.texture for k, lb in zip(logits["texture"].argmax(1), labels)]),
        "count": np.mean([k + 2 == len(lb.kinds) for k, lb in zip(logits["count"].argmax(1).tolist(), labels)]),
        "top_kind": np.mean([KINDS[k] == lb.kinds[-1] for k, lb in zip(logits["top_kind"].argmax(1), labels)]),
        "top_hue": np.mean([k == lb.hues[-1] for k, lb in zip(logits["top_hue"].argmax(1).tolist(), labels)]),
        "kinds": ((logits["kinds"] > 0).float() == presence([lb.kinds for lb in labels], KINDS)).float().mean(),
        "hues": ((logits["hues"] > 0).float() == presence([lb.hues for lb in labels], range(hue_sextants)))
        .float()
        .mean(),
    }
    for head, value in accuracy.items():
        value = float(value)
        # the JSON's number for exactly these images (one image may flip with another CPU's float rounding) ...
        assert value == pytest.approx(check["accuracy"][head], abs=1.01 / n), head
        # ... and consistent with the larger held-out measurement (3 binomial standard errors)
        p = heldout[head]
        assert value >= p - 3 * math.sqrt(p * (1 - p) / n), head
    # far above chance (1/3, 1/4, 1/6)
    assert accuracy["texture"] > 0.95 and accuracy["top_kind"] > 0.5 and accuracy["top_hue"] > 0.45


def test_labels_come_with_the_same_image():
    for seed in (0, 7, shapes_seed("test", 3)):
        image, labels = render_shapes_labelled(seed)
        assert np.array_equal(image, render_shapes(seed))
        assert 2 <= labels.count <= 5 and len(labels.hues) == labels.count
        assert labels.texture in TEXTURES and set(labels.kinds) <= set(KINDS)


def test_extractors_by_name_and_import_path(empty_torch_home):
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    shapes = load_extractor("shapes", batch_size=2)
    assert shapes.name == "shapes (evaluation/shapes_features32.safetensors, 128-d)"
    features = shapes(images)
    assert features.shape == (5, 128) and features.dtype == np.float64 and (features >= 0).all()  # pooled ReLU
    with torch.no_grad():  # batching does not change them; a 64 px image is resized to 32 px first
        assert np.allclose(features, load_shapes_net().features(images).double().numpy(), atol=1e-5)
        big = torch.nn.functional.interpolate(images, size=64, mode="nearest")
        assert shapes(big).shape == (5, 128)
    flat = load_extractor("torch.nn:Flatten")
    assert flat.name == "torch.nn:Flatten" and np.allclose(flat(images), images.flatten(1).double().numpy())
    with pytest.raises(ValueError, match="unknown feature extractor"):
        load_extractor("nope")
    with pytest.raises(MetricUnavailable, match="pt_inception"):
        load_extractor("inception")
