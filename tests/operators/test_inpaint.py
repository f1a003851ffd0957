"""Box and random-pixel inpainting masks (DPS's ``mask_generator``), drawn from explicit generators."""

import pytest
import torch

from operators import BoxInpainting, RandomInpainting, generators_from_seeds


def hole_bounds(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the zeros of a (H, W) mask, exclusive ends."""
    rows = torch.nonzero((mask == 0).any(dim=1)).flatten()
    cols = torch.nonzero((mask == 0).any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def test_box_hole_size_and_margin_at_dps_defaults() -> None:
    op = BoxInpainting(generator=generators_from_seeds(range(20)))  # 256 px, 128 hole, margin 16
    assert op.mask.shape == (20, 1, 256, 256)
    for mask, (top, left) in zip(op.mask[:, 0], op.positions.tolist()):
        assert int((mask == 0).sum()) == 128 * 128  # one full square hole
        assert hole_bounds(mask) == (top, top + 128, left, left + 128)
        assert 16 <= top <= 111  # randint(16, 256 - 16 - 128) excludes 112
        assert 16 <= left <= 111


def test_box_random_placement_reaches_both_extremes() -> None:
    # randint(margin, size - margin - hole) = randint(4, 44): 40 values, both ends must occur over 500 draws
    op = BoxInpainting(image_size=64, hole=16, margin=4, generator=generators_from_seeds(range(500)))
    for axis in range(2):
        values = op.positions[:, axis]
        assert int(values.min()) == 4
        assert int(values.max()) == 64 - 4 - 16 - 1
        assert len(values.unique()) == 40


def test_box_fixed_position_and_rectangular_images() -> None:
    op = BoxInpainting(image_size=(64, 96), hole=20, position=(5, 70))
    assert op.mask.shape == (1, 1, 64, 96)
    assert hole_bounds(op.mask[0, 0]) == (5, 25, 70, 90)
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    y = op(x)
    assert bool((y[..., 5:25, 70:90] == 0).all())
    assert torch.equal(y[..., :5, :], x[..., :5, :])
    per_image = BoxInpainting(image_size=64, hole=8, position=[(0, 0), (56, 56)])
    assert per_image.positions.tolist() == [[0, 0], [56, 56]]


def test_box_seeding_is_per_image() -> None:
    batched = BoxInpainting(generator=generators_from_seeds([3, 4]))
    for i, seed in enumerate([3, 4]):
        alone = BoxInpainting(generator=torch.Generator().manual_seed(seed))
        assert torch.equal(alone.mask[0], batched.mask[i])


def test_box_errors() -> None:
    with pytest.raises(ValueError, match="too small"):
        BoxInpainting(image_size=100, hole=128, generator=torch.Generator())
    with pytest.raises(ValueError, match="too small"):
        BoxInpainting(image_size=160, hole=128, margin=16, generator=torch.Generator())  # randint(16, 16) is empty
    with pytest.raises(ValueError, match="does not fit"):
        BoxInpainting(image_size=64, hole=32, position=(40, 0))
    with pytest.raises(ValueError, match="generator="):
        BoxInpainting()
    op = BoxInpainting(generator=generators_from_seeds([0, 1]))
    with pytest.raises(ValueError, match="mask is"):
        op(torch.zeros(2, 3, 128, 128))
    with pytest.raises(ValueError, match="2 masks"):
        op(torch.zeros(3, 3, 256, 256))


def test_random_inpaint_drops_exactly_int_hw_p_pixels_on_all_channels() -> None:
    seeds = range(8)
    op = RandomInpainting(image_size=(48, 40), generator=generators_from_seeds(seeds))
    x = torch.ones(8, 3, 48, 40)
    y = op(x)
    probs = torch.tensor(op.drop_probs)
    assert bool(((probs >= 0.3) & (probs <= 0.7)).all())
    assert len(set(op.drop_probs)) == 8
    for i, p in enumerate(op.drop_probs):
        dropped = y[i] == 0
        assert torch.equal(dropped[0], dropped[1]) and torch.equal(dropped[0], dropped[2])
        assert int(dropped[0].sum()) == int(48 * 40 * p)
        alone = RandomInpainting(image_size=(48, 40), generator=torch.Generator().manual_seed(i))
        assert alone.drop_probs[0] == p and torch.equal(alone.mask[0], op.mask[i])


def test_random_inpaint_probability_range() -> None:
    ops = [RandomInpainting(64, (0.5, 0.5), generator=torch.Generator().manual_seed(s)) for s in range(3)]
    assert all(int((op.mask == 0).sum()) == 64 * 64 // 2 for op in ops)
    assert not torch.equal(ops[0].mask, ops[1].mask)
    with pytest.raises(ValueError, match="prob_range"):
        RandomInpainting(64, (0.7, 0.3), generator=torch.Generator())


def test_inpainting_transpose_modes() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(1, 3, 256, 256, generator=g)
    dps = BoxInpainting(position=(64, 64))
    assert torch.equal(dps.transpose(y), y)  # DPS's InpaintingOperator.transpose is the identity
    in_range = dps(y)  # a noiseless measurement: zero in the hole
    assert torch.equal(dps.transpose(in_range), dps.adjoint(in_range))
    exact = BoxInpainting(position=(64, 64), transpose_mode="adjoint")
    assert torch.equal(exact.transpose(y), y * exact.mask)
