"""Sample grids: tiling and the grayscale PNG encoder, checked against Pillow's decoder."""

import io

import numpy as np
from PIL import Image

from gridstudy.images import encode_png, tile


def test_tile_puts_eight_per_row_with_white_gaps():
    grid = tile(np.zeros((64, 28, 28), np.uint8))
    assert grid.shape == (8 * 28 + 7 * 2, 8 * 28 + 7 * 2)
    assert grid[28:30].min() == 255 and grid[:28, :28].max() == 0


def test_encode_png_round_trips_through_pillow():
    image = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)
    decoded = Image.open(io.BytesIO(encode_png(image)))
    assert decoded.mode == "L" and np.array_equal(np.asarray(decoded), image)
