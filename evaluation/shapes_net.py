"""A small feature network for the procedural shapes domain (``imaging.shapes``), for KID/FID on the tiny priors.

Inception features describe natural images; on 32 px procedural shapes, and offline, they are neither available
nor meaningful. ``ShapesNet`` is a small CNN trained (``scripts/train_features.py``) to predict what the shapes
generator drew: background texture, number of shapes, the kind and hue of the top (never occluded) shape, and
which kinds and hues occur. Its globally pooled last-stage activations (``feature_dim`` values, after ReLU, as
Inception's pool3 features are) are the features KID/FID compare; the heads exist only to train them.

The shipped weights (``SHAPES_FEATURES``, safetensors) store the model config in their header and come with a
JSON file holding the training command and the held-out accuracy of every head.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from imaging.shapes import HUE_BINS, KINDS, TEXTURES, ShapeLabels, render_shapes_labelled, shapes_seed

SHAPES_FEATURES = Path(__file__).resolve().parent / "shapes_features32.safetensors"
MODEL_CONFIG = {"image_size": 32, "channels": [24, 48, 96, 128]}

# head name -> (number of outputs, single-label (softmax) or multi-label (sigmoid))
HEADS: dict[str, tuple[int, str]] = {
    "texture": (len(TEXTURES), "single"),
    "count": (4, "single"),  # 2..5 shapes
    "top_kind": (len(KINDS), "single"),
    "top_hue": (HUE_BINS, "single"),
    "kinds": (len(KINDS), "multi"),  # which kinds occur
    "hues": (HUE_BINS, "multi"),  # which hue sextants occur
}


def label_targets(labels: ShapeLabels) -> dict[str, torch.Tensor]:
    """The training targets of one image: class indices for single-label heads, 0/1 vectors for multi-label."""
    kinds = torch.zeros(len(KINDS))
    kinds[[KINDS.index(k) for k in labels.kinds]] = 1
    hues = torch.zeros(HUE_BINS)
    hues[list(labels.hues)] = 1
    return {
        "texture": torch.tensor(TEXTURES.index(labels.texture)),
        "count": torch.tensor(labels.count - 2),
        "top_kind": torch.tensor(KINDS.index(labels.kinds[-1])),
        "top_hue": torch.tensor(labels.hues[-1]),
        "kinds": kinds,
        "hues": hues,
    }


def labelled_shapes(split: str, start: int, n: int, size: int = 32) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Images ``start .. start + n - 1`` of a shapes split, (n, 3, size, size) in [-1, 1], and their stacked targets."""
    images, targets = [], []
    for i in range(start, start + n):
        image, labels = render_shapes_labelled(shapes_seed(split, i), size)
        images.append(torch.from_numpy(image).permute(2, 0, 1) * 2 - 1)
        targets.append(label_targets(labels))
    return torch.stack(images), {k: torch.stack([t[k] for t in targets]) for k in HEADS}


class ShapesNet(nn.Module):
    """Conv stages (two 3x3 conv + BatchNorm + ReLU each, 2x average pooling between), global average pool."""

    def __init__(self, image_size: int = 32, channels: list[int] | tuple[int, ...] = (24, 48, 96, 128)):
        super().__init__()
        self.image_size = image_size
        self.channels = list(channels)
        stages, c_in = [], 3
        for i, c in enumerate(self.channels):
            layers: list[nn.Module] = [nn.AvgPool2d(2)] if i else []
            for j in range(2):
                layers += [nn.Conv2d(c_in if j == 0 else c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            stages.append(nn.Sequential(*layers))
            c_in = c
        self.stages = nn.Sequential(*stages)
        self.heads = nn.ModuleDict({name: nn.Linear(c_in, n) for name, (n, _) in HEADS.items()})

    @property
    def feature_dim(self) -> int:
        return self.channels[-1]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, feature_dim); other sizes are resized (antialiased) to ``image_size``."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
        return self.stages(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The heads' logits."""
        h = self.features(images)
        return {name: head(h) for name, head in self.heads.items()}


def head_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over heads of cross-entropy (single-label) or mean binary cross-entropy (multi-label)."""
    total = logits["texture"].new_zeros(())
    for name, (_, kind) in HEADS.items():
        if kind == "single":
            total = total + F.cross_entropy(logits[name], targets[name])
        else:
            total = total + F.binary_cross_entropy_with_logits(logits[name], targets[name])
    return total


def head_accuracy(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per head: share of images classified right (single-label) or of all 0/1 decisions right (multi-label)."""
    out = {}
    for name, (_, kind) in HEADS.items():
        if kind == "single":
            out[name] = (logits[name].argmax(1) == targets[name]).float().mean().item()
        else:
            out[name] = ((logits[name] > 0).float() == targets[name]).float().mean().item()
    return out


def save_shapes_net(model: ShapesNet, path: str | Path, meta: dict | None = None) -> None:
    """Weights as safetensors, the model config in the header; ``meta`` (if given) beside it as ``.json``."""
    from safetensors.torch import save_file

    path = Path(path)
    config = {"image_size": model.image_size, "channels": model.channels}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(config)})
    if meta is not None:
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


def load_shapes_net(path: str | Path = SHAPES_FEATURES, device: str | torch.device = "cpu") -> ShapesNet:
    """The network stored at ``path`` (strict loading), in eval mode without gradients."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["config"])
    model = ShapesNet(**config)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.to(device).eval().requires_grad_(False)
