"""Image files in and out: the fixed 8-bit mapping, atomic writes, RGB conversion, resize + crop."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from imaging import (
    atomic_write,
    from_uint8,
    load_image,
    quantize,
    read_png,
    resize_center_crop,
    save_image,
    to_rgb,
    to_uint8,
)


def test_fixed_mapping_clamps_and_rounds(tmp_path):
    values = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    image = values.view(1, 1, 7).expand(3, 1, 7)
    path = save_image(image, tmp_path / "x.png")
    stored = np.asarray(Image.open(path))
    # (x + 1) * 127.5 rounded half to even: -0.5 -> 63.75 -> 64, 0 -> 127.5 -> 128, 0.5 -> 191.25 -> 191
    assert stored[0, :, 0].tolist() == [0, 0, 64, 128, 191, 255, 255]
    assert stored.dtype == np.uint8 and stored.shape == (1, 7, 3)


def test_mapping_is_not_per_image_min_max(tmp_path):
    dim = torch.full((3, 4, 4), -0.5)  # DPS would stretch this flat image to its own min/max
    path = save_image(dim, tmp_path / "dim.png")
    assert np.unique(np.asarray(Image.open(path))).tolist() == [64]


def test_quantize_equals_file_round_trip(tmp_path):
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    save_image(x, tmp_path / "x.png")
    assert torch.equal(read_png(tmp_path / "x.png"), quantize(x))
    assert torch.equal(from_uint8(to_uint8(quantize(x))), quantize(x))


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def broken(f):
        f.write("half of the new cont")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temporary file left behind


def test_save_image_leaves_no_temporary_files(tmp_path):
    save_image(torch.zeros(3, 4, 4), tmp_path / "a" / "b.png")
    assert os.listdir(tmp_path / "a") == ["b.png"]


def test_rgba_is_composited_over_white():
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 0, 0, 255)  # opaque: unchanged
    rgba[0, 1] = (200, 0, 0, 0)  # transparent: the background
    rgba[0, 2] = (0, 0, 0, 128)  # half: 255 * (1 - 128/255) = 127
    rgb = np.asarray(to_rgb(Image.fromarray(rgba, "RGBA")))
    assert rgb[0, 0].tolist() == [200, 0, 0]
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[0, 2].tolist() == [127, 127, 127]


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "I;16"])
def test_every_mode_becomes_rgb(mode):
    image = Image.new("RGB", (5, 4), (10, 120, 240)).convert(mode)
    out = to_rgb(image)
    assert out.mode == "RGB" and out.size == (5, 4)


def test_palette_transparency_is_alpha():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0  # palette entry 0 is transparent
    assert np.asarray(to_rgb(image))[0].tolist() == [[255, 255, 255], [255, 0, 0]]


def test_resize_then_centre_crop():
    # 64 x 32 (W x H): shorter side 32 -> scale 1, crop the central 32 columns
    array = np.zeros((32, 64, 3), dtype=np.uint8)
    array[:, 16:48] = 255
    out = resize_center_crop(Image.fromarray(array), 32)
    assert out.size == (32, 32)
    assert np.asarray(out).min() == 255
    # downsampling 2x a 2-pixel checkerboard with the antialiased filter averages it to grey
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    down = np.asarray(resize_center_crop(Image.fromarray(checker).convert("RGB"), 32)).astype(int)
    assert np.abs(down[4:-4, 4:-4] - 128).max() <= 2


def test_load_image_range_and_shape(tmp_path):
    Image.fromarray(np.full((40, 60, 3), 255, np.uint8)).save(tmp_path / "w.jpg")
    x = load_image(tmp_path / "w.jpg", 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x, torch.ones_like(x), atol=2 / 127.5)


def test_written_files_get_the_same_permissions_as_a_plain_open(tmp_path):
    (tmp_path / "plain.txt").write_text("x")  # open() honours the umask: the reference
    save_image(torch.zeros(3, 4, 4), tmp_path / "atomic.png")
    atomic_write(tmp_path / "atomic.txt", lambda f: f.write("x"))
    expected = os.stat(tmp_path / "plain.txt").st_mode & 0o777
    assert os.stat(tmp_path / "atomic.png").st_mode & 0o777 == expected
    assert os.stat(tmp_path / "atomic.txt").st_mode & 0o777 == expected
