"""Sample grids: tile a run's kept samples into one image and write it as PNG."""

from __future__ import annotations

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
