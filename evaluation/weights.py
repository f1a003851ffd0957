"""Where metric networks find their weights offline: an explicit file, or the warm torch hub cache.

Nothing here downloads (``runner.weights`` fetches into that cache before a run). ``torch.hub.get_dir()`` is
``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``), and torchvision / pytorch-fid keep downloaded weights in its
``checkpoints/`` folder under the URL's file name, so a cache copied from a machine with internet works as is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .result import MetricUnavailable


@dataclass(frozen=True)
class WeightsFile:
    """A weights file a metric needs: its canonical file name, where it is published, the SHA-256 (or the
    published prefix of it) it must have and its size in MB as published; None where its publisher gives none."""

    what: str
    filename: str
    url: str
    sha256: str | None = None
    size_mb: float | None = None


def hub_checkpoint(filename: str) -> Path:
    """``$TORCH_HOME/hub/checkpoints/<filename>`` (read at call time, so TORCH_HOME may change)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def find_weights(spec: WeightsFile, explicit: str | os.PathLike | None, setting: str) -> Path:
    """The weights file: ``explicit`` if given (it must exist), else the hub cache copy; raise
    ``MetricUnavailable`` naming the file, where to put it and which ``setting`` points at it otherwise."""
    cached = hub_checkpoint(spec.filename)
    if explicit:
        path = Path(os.path.expanduser(str(explicit)))
        if path.is_file():
            return path
        raise MetricUnavailable(
            f"{spec.what} weights not found at {setting}={path}. Download {spec.url} (file {spec.filename}) "
            f"and put it there, or at {cached} and unset {setting}"
        )
    if cached.is_file():
        return cached
    raise MetricUnavailable(
        f"{spec.what} weights {spec.filename} not found in the torch hub cache ({cached}; TORCH_HOME="
        f"{os.environ.get('TORCH_HOME', '<unset>')}). Download {spec.url} where there is internet and put it at "
        f"{cached}, or set {setting}=/path/to/{spec.filename}"
    )
