"""LPIPS (Zhang et al. 2018) via the ``lpips`` package, without downloads.

``lpips.LPIPS(pnet_rand=True)`` builds the network with a randomly initialised backbone (so torchvision downloads
nothing) and loads the package's own linear-layer weights (shipped inside the wheel); the ImageNet backbone
(torchvision's AlexNet or VGG16 ``features``) is then loaded here from a local file: ``weights=`` or the torch hub
cache (``evaluation.weights``). DPS reported LPIPS with VGG; AlexNet is the common choice and the default.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from .result import MetricUnavailable
from .weights import WeightsFile, find_weights

#: torchvision ImageNet weights of the LPIPS backbones (torchvision's ``*_Weights.IMAGENET1K_V1``); the hex in the
#: file name is the SHA-256 prefix torchvision checks on download (``get_state_dict(check_hash=True)``); the sizes
#: are the weights' ``meta["_file_size"]`` (MB)
BACKBONES: dict[str, WeightsFile] = {
    "alex": WeightsFile(
        "LPIPS backbone (AlexNet)",
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256="7be5be79",
        size_mb=233.087,
    ),
    "vgg": WeightsFile(
        "LPIPS backbone (VGG16)",
        "vgg16-397923af.pth",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256="397923af",
        size_mb=527.796,
    ),
}


def _check_net(net: str) -> str:
    if net not in BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; valid: {', '.join(BACKBONES)}")
    return net


def build_lpips(net: str = "alex") -> torch.nn.Module:
    """``lpips.LPIPS`` with the package's linear layers and a *randomly initialised* backbone (nothing downloaded)."""
    import lpips

    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{_check_net(net)}.pth"
    if not linear.is_file():
        raise MetricUnavailable(f"the lpips package has no linear-layer weights at {linear}; reinstall lpips")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated" for lpips' own call
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    return model.eval().requires_grad_(False)


def load_backbone_(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Copy torchvision ``features.<i>.*`` tensors from the state dict at ``path`` into lpips' ``net.slice*``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MetricUnavailable(f"could not read LPIPS backbone weights {path}: {type(exc).__name__}: {exc}") from exc
    with torch.no_grad():
        for slice_ in model.net.children():
            for index, layer in slice_.named_children():
                for pname, param in layer.named_parameters(recurse=False):
                    key = f"features.{index}.{pname}"
                    if key not in state or state[key].shape != param.shape:
                        raise MetricUnavailable(
                            f"{path} is not torchvision's {model.pnet_type} ImageNet state dict: "
                            f"{key} missing or of the wrong shape"
                        )
                    param.copy_(state[key])


def load_lpips(net: str = "alex", weights: str | os.PathLike | None = None, setting: str = "metrics.lpips.weights"):
    """LPIPS with its ImageNet backbone from ``weights`` or the hub cache; ``MetricUnavailable`` when absent."""
    path = find_weights(BACKBONES[_check_net(net)], weights, setting)
    model = build_lpips(net)
    load_backbone_(model, path)
    return model


@torch.no_grad()
def lpips_distance(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image LPIPS of images in [-1, 1] (shape (B,)), in float32 on the model's device."""
    device = next(model.parameters()).device
    return model(x.to(device, torch.float32), y.to(device, torch.float32)).flatten().double().cpu()
