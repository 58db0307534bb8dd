"""Montage PNGs: radiological slice orientation, panel layout, atomic writing."""

from __future__ import annotations

import numpy as np
import pytest

from montage_cells import montage_cells, sample_centres

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
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.png"]  # no temporary file left


def test_montage_cells_show_each_panels_planes_in_radiological_orientation(tmp_path):
    """Every cell holds its own panel's slice: rows are planes, columns panels, voxels where the convention puts
    them (expected images built here by transposing and flipping), with the pixel aspect of the spacing."""
    rng = np.random.default_rng(0)
    vols = [rng.integers(1, 4, size=(5, 6, 7)).astype(np.float32) for _ in range(2)]  # grey levels 1/4, 2/4, 3/4
    i, j, k = 1, 4, 2
    spacing = (1.0, 1.5, 2.0)
    path = save_montage(tmp_path / "m.png", [("A", vols[0], (0, 4)), ("B", vols[1], (0, 4))],
                        slice_index=(i, j, k), spacing_mm=spacing, title="t", dpi=60)
    cells = montage_cells(path, rows=3, cols=2)
    for c, vol in enumerate(vols):
        expected = {  # (display image, physical height / width of one pixel)
            "axial": (vol[:, :, k].T[::-1, ::-1], spacing[1] / spacing[0]),  # anterior up, patient right left
            "coronal": (vol[:, j, :].T[::-1, ::-1], spacing[2] / spacing[0]),  # superior up, patient right left
            "sagittal": (vol[i, :, :].T[::-1, ::-1], spacing[2] / spacing[1]),  # superior up, anterior left
        }
        for r, (image, aspect) in enumerate(expected.values()):
            cell = cells[r][c]
            np.testing.assert_allclose(sample_centres(cell, image.shape), image / 4, atol=0.02)
            assert cell.shape[0] / cell.shape[1] == pytest.approx(image.shape[0] * aspect / image.shape[1], rel=0.05)


def test_save_montage_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="share one"):
        save_montage(tmp_path / "x.png", [("a", np.zeros((4, 4, 4)), None), ("b", np.zeros((4, 4, 5)), None)])
    with pytest.raises(ValueError, match="at least one panel"):
        save_montage(tmp_path / "x.png", [])
