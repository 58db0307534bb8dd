"""Tests for drdd_med.slicer_support.arrays: KJI <-> MetaTensor round trips and agreement with nibabel / MONAI."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImage

from drdd_med.slicer_support.arrays import (
    kji_to_metatensor,
    kji_to_xyz,
    matrix_from_vtk,
    metatensor_to_kji,
    xyz_to_kji,
)

# An oblique IJK-to-RAS with anisotropic spacing: rotation about S plus a flip, spacings 0.5 / 0.8 / 2.5 mm.
_C, _S = np.cos(0.3), np.sin(0.3)
IJK_TO_RAS = np.array([[-0.5 * _C, 0.8 * _S, 0.0, 12.0],
                       [-0.5 * _S, -0.8 * _C, 0.0, -7.5],
                       [0.0, 0.0, 2.5, 30.0],
                       [0.0, 0.0, 0.0, 1.0]])


class FakeVtkMatrix:
    def __init__(self, m):
        self.m = m

    def GetElement(self, r, c):
        return self.m[r, c]


def test_kji_metatensor_round_trip():
    kji = np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)  # K=4 slices, J=5 rows, I=6 columns
    image = kji_to_metatensor(kji, IJK_TO_RAS)
    assert tuple(image.shape) == (1, 6, 5, 4)
    assert image[0, 5, 4, 3] == kji[3, 4, 5]
    back, matrix = metatensor_to_kji(image)
    np.testing.assert_array_equal(back, kji)
    np.testing.assert_allclose(matrix, IJK_TO_RAS)
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(xyz_to_kji(kji_to_xyz(kji)), kji)


def test_affine_matches_nibabel_and_monai(tmp_path):
    kji = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    image = kji_to_metatensor(kji, IJK_TO_RAS)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(image[0].numpy(), np.asarray(image.affine)), str(path))
    loaded = nib.load(str(path))
    np.testing.assert_allclose(loaded.affine, IJK_TO_RAS, atol=1e-5)
    # The RAS position of voxel (i, j, k) is the same whichever way it is computed.
    i, j, k = 5, 1, 3
    np.testing.assert_allclose(nib.affines.apply_affine(loaded.affine, [i, j, k]), (IJK_TO_RAS @ [i, j, k, 1])[:3],
                               atol=1e-4)
    assert loaded.get_fdata()[i, j, k] == kji[k, j, i]
    monai_image = LoadImage(image_only=True)(str(path))
    np.testing.assert_allclose(np.asarray(monai_image.affine), IJK_TO_RAS, atol=1e-5)
    back, _ = metatensor_to_kji(monai_image[None])
    np.testing.assert_array_equal(back, kji)


def test_matrix_from_vtk_duck_type():
    np.testing.assert_array_equal(matrix_from_vtk(FakeVtkMatrix(IJK_TO_RAS)), IJK_TO_RAS)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: kji_to_metatensor(np.zeros((2, 3)), np.eye(4)), "3D KJI"),
        (lambda: kji_to_metatensor(np.zeros((2, 3, 4)), np.eye(3)), "4x4"),
        (lambda: kji_to_metatensor(np.zeros((2, 3, 4)), np.ones((4, 4))), "last row"),
        (lambda: metatensor_to_kji(kji_to_metatensor(np.zeros((2, 3, 4)), np.eye(4)).repeat(2, 1, 1, 1)),
         "single-channel"),
    ],
)
def test_bad_inputs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
