"""Image folders: sorted, limited, sharded with global indices, bad files skipped and counted."""

import numpy as np
import pytest
from PIL import Image

from imaging import ImageFolder


def _png(path, value, size=(8, 8)):
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    for k, name in enumerate(["c.png", "a.png", "e.jpg", "b.png", "d.png"]):
        _png(tmp_path / name, 40 * k)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / ".hidden.png").write_bytes(b"ignored")
    return tmp_path


def test_sorted_names_and_skips(folder):
    data = ImageFolder(folder, 8)
    assert [s.name for s in data.all] == ["a", "b", "c", "d", "e"]
    assert [s.index for s in data.all] == [0, 1, 2, 3, 4]
    assert sorted(s.name for s in data.skipped) == ["broken.png", "notes.txt"]
    assert all("not a readable image" in s.reason for s in data.skipped)


def test_limit_counts_usable_images(folder):
    data = ImageFolder(folder, 8, limit=3)
    assert [s.name for s in data.all] == ["a", "b", "c"]  # broken.png (sorted before c) does not use a slot


def test_shards_cover_the_set_once_with_global_indices(folder):
    shards = [ImageFolder(folder, 8, shard=k, num_shards=2).samples for k in range(2)]
    assert [s.index for s in shards[0]] == [0, 2, 4]
    assert [s.index for s in shards[1]] == [1, 3]
    whole = ImageFolder(folder, 8).all
    assert sorted(shards[0] + shards[1], key=lambda s: s.index) == whole


def test_min_size_drops_small_images(tmp_path):
    _png(tmp_path / "big.png", 0, (16, 20))
    _png(tmp_path / "small.png", 0, (8, 30))
    data = ImageFolder(tmp_path, 8, min_size=10)
    assert [s.name for s in data.all] == ["big"]
    assert "smaller than min_size=10" in data.skipped[0].reason


def test_colliding_stems_get_unique_names(tmp_path):
    _png(tmp_path / "x.png", 0)
    _png(tmp_path / "x.jpg", 0)
    assert [s.name for s in ImageFolder(tmp_path, 8).all] == ["x_jpg", "x_png"]


def test_bad_shard_arguments(tmp_path):
    with pytest.raises(ValueError, match="shard"):
        ImageFolder(tmp_path, 8, shard=2, num_shards=2)
