"""Per-image streams: a function of (seed, index, stream) only, independent across streams and images."""

import numpy as np
import torch

from runner import image_streams, stream_seed


def test_seed_is_a_pure_function_of_seed_index_stream():
    expected = int(np.random.SeedSequence([7, 12, 2]).generate_state(1)[0])
    assert stream_seed(7, 12, 2) == expected
    seeds = {stream_seed(s, i, k) for s in (0, 1) for i in range(50) for k in range(3)}
    assert len(seeds) == 2 * 50 * 3  # no collisions between images, streams or run seeds


def test_streams_do_not_depend_on_the_batch():
    alone = image_streams(0, [5])
    batch = image_streams(0, [3, 4, 5])
    for a, b in zip(
        (alone.operator[0], alone.noise[0], alone.sampler[0]), (batch.operator[2], batch.noise[2], batch.sampler[2])
    ):
        assert torch.equal(torch.randn(4, generator=a), torch.randn(4, generator=b))
    draws = [torch.randn(3, generator=g) for g in (alone.operator[0], alone.noise[0], alone.sampler[0])]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
