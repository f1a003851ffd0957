"""Per-image random streams: three independent generators per image, seeded from (seed, image index, stream).

Restarts (``solver.restarts``): restart 0 of an image draws from its sampler stream, restart k >= 1 from a sampler
stream of its own, seeded from (seed, image index, sampler stream, k) (``restart_generators``).

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


def restart_seed(seed: int, index: int, restart: int) -> int:
    """The sampler seed of restart ``restart`` of image ``index``: restart 0 is the image's ``SAMPLER`` stream (a run
    without restarts), restart k >= 1 ``SeedSequence([seed, index, SAMPLER, k])``."""
    if restart < 0:
        raise ValueError(f"restart must be >= 0, got {restart}")
    if restart == 0:
        return stream_seed(seed, index, SAMPLER)
    if min(seed, index) < 0:
        raise ValueError(f"seed and index must be >= 0, got {seed}, {index}")
    return int(np.random.SeedSequence([int(seed), int(index), SAMPLER, int(restart)]).generate_state(1)[0])


def restart_generators(seed: int, indices: Sequence[int], restarts: int) -> list[list[torch.Generator]]:
    """Fresh sampler generators for ``restarts`` restarts of the images ``indices``: ``[k][b]`` for restart k of
    image b; ``[0]`` is ``image_streams(seed, indices).sampler``."""
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    return [[torch.Generator().manual_seed(restart_seed(seed, i, k)) for i in indices] for k in range(restarts)]
