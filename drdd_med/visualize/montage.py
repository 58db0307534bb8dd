"""Montage PNGs of 3D volumes: one row per plane (axial, coronal, sagittal), one column per panel.

Volumes are (X, Y, Z) arrays in RAS index order. Slices are shown in the radiological convention: axial and coronal
with the patient's right on the left of the image, superior or anterior up; sagittal with anterior on the left.
Pixel aspect follows ``spacing_mm``. Rendering uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from drdd_med.io.atomic import atomic_file

__all__ = ["PLANES", "Panel", "save_montage", "plane_slice"]

#: Plane name -> (volume axis that is sliced, (row axis, column axis) of the displayed image).
PLANES = {"axial": (2, (1, 0)), "coronal": (1, (2, 0)), "sagittal": (0, (2, 1))}

#: A panel: (title, (X, Y, Z) volume, display) where display is (vmin, vmax), a colormap name, or a dict with any of
#: ``vmin``, ``vmax``, ``cmap``, ``colorbar`` (bool) and ``label`` (colour-bar label, e.g. "HU").
Panel = tuple[str, Any, Union[tuple[float, float], str, Mapping[str, Any], None]]


def plane_slice(volume: np.ndarray, plane: str, index: int | None = None) -> np.ndarray:
    """A 2D display image of one plane of an (X, Y, Z) volume.

    Args:
        volume: (X, Y, Z) array, RAS index order.
        plane: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        index: slice index along the plane's normal axis (default: the middle slice).

    Returns:
        (rows, columns) array, oriented for display (superior/anterior up, patient right on the left).
    """
    if plane not in PLANES:
        raise ValueError(f"plane={plane!r}: expected one of {sorted(PLANES)}.")
    axis, (row_axis, col_axis) = PLANES[plane]
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"montage volumes must be (X, Y, Z); got shape {volume.shape}.")
    index = volume.shape[axis] // 2 if index is None else int(index)
    if not 0 <= index < volume.shape[axis]:
        raise ValueError(f"slice index {index} is outside [0, {volume.shape[axis]}) for the {plane} plane.")
    image = np.take(volume, index, axis=axis)
    remaining = [a for a in range(3) if a != axis]
    image = image.transpose(remaining.index(row_axis), remaining.index(col_axis))
    return image[::-1, ::-1]


def _display(volume: np.ndarray, spec: Any) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        out = dict(spec)
    elif isinstance(spec, str):
        out = {"cmap": spec}
    elif spec is None:
        out = {}
    else:
        vmin, vmax = spec
        out = {"vmin": float(vmin), "vmax": float(vmax)}
    finite = np.asarray(volume, dtype=np.float32)
    out.setdefault("vmin", float(np.percentile(finite, 0.5)))
    out.setdefault("vmax", float(np.percentile(finite, 99.5)))
    out.setdefault("cmap", "gray")
    return out


def save_montage(path: str | Path, panels: Sequence[Panel], planes: Sequence[str] = ("axial", "coronal", "sagittal"),
                 slice_index: Mapping[str, int] | Sequence[int] | None = None,
                 spacing_mm: Sequence[float] = (1.0, 1.0, 1.0), title: str | None = None, dpi: int = 100) -> Path:
    """Save a PNG montage; the file is written atomically (temporary file, then rename).

    Args:
        path: output ``.png``.
        panels: ``[(title, volume (X, Y, Z), display), ...]``; every volume has the same shape. ``display`` is
            ``(vmin, vmax)`` (e.g. a HU window), a matplotlib colormap name (auto range), a dict (``vmin``, ``vmax``,
            ``cmap``, ``colorbar``, ``label``) or None (grey, 0.5-99.5 percentile range).
        planes: rows of the montage.
        slice_index: per plane index (``{"axial": 20}``) or (i, j, k) voxel whose planes are shown; default centre.
        spacing_mm: (3,) voxel size for the pixel aspect ratio.
        title: figure title.
        dpi: resolution.

    Returns:
        The written path.

    Example:
        >>> save_montage("qc.png", [("MR", mr, None), ("CT", ct, (-1000, 1500)), ("|error|", err, {"cmap": "magma",
        ...     "vmin": 0, "vmax": 200, "colorbar": True, "label": "HU"})], spacing_mm=(2.2, 2.2, 3.5))
    """
    from matplotlib.figure import Figure  # no pyplot: no global state; PNG output renders with Agg

    if not panels:
        raise ValueError("save_montage needs at least one panel.")
    shapes = {np.shape(v) for _, v, _ in panels}
    if len(shapes) != 1:
        raise ValueError(f"montage panels must share one (X, Y, Z) shape; got {sorted(shapes)}.")
    if isinstance(slice_index, Mapping):
        indices = dict(slice_index)
    elif slice_index is not None:
        indices = {p: int(slice_index[PLANES[p][0]]) for p in planes}
    else:
        indices = {}
    spacing = np.asarray(spacing_mm, dtype=float)
    fig = Figure(figsize=(2.6 * len(panels), 2.6 * len(planes) + (0.4 if title else 0.0)), dpi=dpi)
    axes = fig.subplots(len(planes), len(panels), squeeze=False)
    for c, (name, volume, spec) in enumerate(panels):
        volume = np.asarray(volume, dtype=np.float32)
        display = _display(volume, spec)
        for r, plane in enumerate(planes):
            _, (row_axis, col_axis) = PLANES[plane]
            ax = axes[r][c]
            im = ax.imshow(plane_slice(volume, plane, indices.get(plane)), cmap=display["cmap"], vmin=display["vmin"],
                           vmax=display["vmax"], aspect=spacing[row_axis] / spacing[col_axis], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0:
                ax.set_ylabel(plane, fontsize=10)
            if display.get("colorbar"):
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label=display.get("label"))
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
