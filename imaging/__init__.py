"""Images in and out: folders of images, the procedural shapes set, 8-bit PNG writing, restoration grids.

Tensors are (3, H, W) or (B, 3, H, W) floats in [-1, 1]; files are 8-bit RGB PNGs written atomically.
"""

from .folder import FileSample, ImageFolder, Skipped, check_shard
from .grid import fit_nearest, image_grid, image_row, restoration_grid
from .io import (
    DEFAULT_BACKGROUND,
    RESAMPLE,
    atomic_path,
    atomic_write,
    from_uint8,
    load_image,
    quantize,
    read_png,
    resize_center_crop,
    resize_tensor,
    save_image,
    to_rgb,
    to_uint8,
    write_json,
    write_text,
)
from .shapes import ShapesDataset, render_shapes

__all__ = [
    "DEFAULT_BACKGROUND",
    "RESAMPLE",
    "FileSample",
    "ImageFolder",
    "ShapesDataset",
    "Skipped",
    "atomic_path",
    "atomic_write",
    "check_shard",
    "fit_nearest",
    "from_uint8",
    "image_grid",
    "image_row",
    "load_image",
    "quantize",
    "read_png",
    "render_shapes",
    "resize_center_crop",
    "resize_tensor",
    "restoration_grid",
    "save_image",
    "to_rgb",
    "to_uint8",
    "write_json",
    "write_text",
]
