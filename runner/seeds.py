"""Per-image random streams: three independent generators per image, seeded from (seed, image index, stream).

Image ``index`` (its position in the run's data set: in the sorted folder listing, or for procedural shapes counted
from ``data.start``) always gets the same operator parameters, measurement noise and sampler noise, whatever the batch
size, the shard or how often the run was resumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: stream ids
OPERATOR, NOISE, SAMPLER = 0, 1, 2


def stream_seed(seed: int, index: int, stream: int) -> int:
    """A 32-bit seed from ``numpy.random.SeedSequence([seed, index, stream])`` (well mixed, independent streams)."""
    if min(seed, index, stream) < 0:
        raise ValueError(f"seed, index and stream must be >= 0, got {seed}, {index}, {stream}")
    return int(np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(1)[0])


@dataclass
class ImageStreams:
    """One CPU generator per image for each stream (lists aligned with the batch)."""

    operator: list[torch.Generator]
    noise: list[torch.Generator]
    sampler: list[torch.Generator]


def image_streams(seed: int, indices: Sequence[int]) -> ImageStreams:
    """Fresh generators for the images ``indices`` (calling it again restarts the streams)."""

    def gens(stream: int) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(stream_seed(seed, i, stream)) for i in indices]

    return ImageStreams(gens(OPERATOR), gens(NOISE), gens(SAMPLER))
