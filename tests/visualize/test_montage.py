"""Montage PNGs: radiological slice orientation, panel layout, atomic writing."""

from __future__ import annotations

import numpy as np
import pytest

from drdd_med.visualize.montage import plane_slice, save_montage


def test_plane_slices_follow_the_radiological_convention():
    vol = np.zeros((5, 6, 7), np.float32)
    vol[4, 5, 6] = 1.0  # most Right, most Anterior, most Superior voxel (RAS index order)
    axial = plane_slice(vol, "axial", 6)
    assert axial.shape == (6, 5) and axial[0, 0] == 1.0  # anterior at the top, patient right on the left
    coronal = plane_slice(vol, "coronal", 5)
    assert coronal.shape == (7, 5) and coronal[0, 0] == 1.0  # superior at the top, right on the left
    sagittal = plane_slice(vol, "sagittal", 4)
    assert sagittal.shape == (7, 6) and sagittal[0, 0] == 1.0  # superior at the top, anterior on the left
    assert plane_slice(vol, "axial").shape == (6, 5)
    with pytest.raises(ValueError, match="outside"):
        plane_slice(vol, "axial", 7)
    with pytest.raises(ValueError, match="expected one of"):
        plane_slice(vol, "oblique")


def test_save_montage_writes_a_png_with_one_cell_per_panel_and_plane(tmp_path):
    import matplotlib.image as mpimg

    rng = np.random.default_rng(0)
    vol = rng.normal(size=(12, 10, 8)).astype(np.float32)
    path = save_montage(tmp_path / "qc" / "m.png",
                        [("MR", vol, None), ("CT", vol * 500, (-1000, 1500)),
                         ("|error|", np.abs(vol), {"cmap": "magma", "vmin": 0, "vmax": 2, "colorbar": True, "label": "HU"})],
                        planes=("axial", "sagittal"), spacing_mm=(1.0, 1.0, 3.0), title="t", dpi=50)
    image = mpimg.imread(path)
    assert image.shape[1] == int(2.6 * 3 * 50) and image.shape[0] == int((2.6 * 2 + 0.4) * 50)
    assert image[..., :3].std() > 0.05  # something was drawn
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.png"]  # no temporary file left


def test_save_montage_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="share one"):
        save_montage(tmp_path / "x.png", [("a", np.zeros((4, 4, 4)), None), ("b", np.zeros((4, 4, 5)), None)])
    with pytest.raises(ValueError, match="at least one panel"):
        save_montage(tmp_path / "x.png", [])
