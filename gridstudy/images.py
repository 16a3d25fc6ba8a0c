"""Sample grids: tile a run's kept samples into one image and write it as PNG."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def tile(samples: np.ndarray, columns: int = 8, gap: int = 2) -> np.ndarray:
    """uint8 images (n, h, w) -> one uint8 image of ``columns`` per row, separated by ``gap``."""
    n, h, w = samples.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), 255, dtype=np.uint8)
    for i, image in enumerate(samples):
        r, c = divmod(i, columns)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
    return out


def save_grid(samples: np.ndarray, path: Path) -> Path:
    """Write the samples as one PNG grid (matplotlib's image writer; no pyplot, no display)."""
    from matplotlib.image import imsave

    imsave(path, tile(samples), cmap="gray", vmin=0, vmax=255)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 grayscale image (h, w) as 8-bit grayscale PNG bytes (a third the size of the RGBA
    PNG that matplotlib writes, and no image library needed)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape
    rows = np.hstack([np.zeros((h, 1), np.uint8), image])  # filter byte 0 (none) per row
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grayscale, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + _png_chunk(b"IEND", b""))
