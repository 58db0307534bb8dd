"""Find the image cells of a montage PNG without matplotlib's layout: the largest regions that are not background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage


def montage_cells(path: str | Path, rows: int, cols: int) -> list[list[np.ndarray]]:
    """The ``rows`` x ``cols`` image cells of a montage PNG as ``cells[row][col]`` grey arrays (mean of RGB).

    A cell is a connected region of non-white pixels (its axes frame closes it); the ``rows * cols`` largest regions
    are taken and ordered top to bottom, then left to right.
    """
    import matplotlib.image as mpimg

    rgb = mpimg.imread(path)[..., :3]
    labels, count = ndimage.label((rgb < 0.98).any(axis=-1))
    boxes = ndimage.find_objects(labels)
    boxes = sorted(boxes, key=lambda b: (b[0].stop - b[0].start) * (b[1].stop - b[1].start), reverse=True)
    boxes = sorted(boxes[:rows * cols], key=lambda b: (b[0].start, b[1].start))
    if len(boxes) != rows * cols:
        raise AssertionError(f"{path}: {len(boxes)} drawn regions, expected {rows} x {cols} cells")
    grey = rgb.mean(axis=-1)
    grid = [sorted(boxes[r * cols:(r + 1) * cols], key=lambda b: b[1].start) for r in range(rows)]
    return [[grey[box] for box in row] for row in grid]


def sample_centres(cell: np.ndarray, shape: tuple[int, int], inset: int = 1) -> np.ndarray:
    """``cell`` read at the centres of a ``shape`` grid of equal pixels, ignoring ``inset`` frame pixels per side."""
    inner = cell[inset:cell.shape[0] - inset, inset:cell.shape[1] - inset]
    r = ((np.arange(shape[0]) + 0.5) * inner.shape[0] / shape[0]).astype(int)
    c = ((np.arange(shape[1]) + 0.5) * inner.shape[1] / shape[1]).astype(int)
    return inner[np.ix_(r, c)]
