"""Convert between Slicer's KJI voxel arrays and MONAI's (C, X, Y, Z) MetaTensors with an explicit IJK-to-RAS matrix.

``slicer.util.arrayFromVolume(node)`` is indexed [k, j, i] (slice, row, column); MONAI, NIfTI and ITK index
[i, j, k]. Slicer's RAS is MONAI's RAS, so the IJK-to-RAS matrix of the volume node is the MetaTensor affine as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["kji_to_xyz", "xyz_to_kji", "kji_to_metatensor", "metatensor_to_kji", "matrix_from_vtk"]


def _check_affine(ijk_to_ras: Any) -> np.ndarray:
    matrix = np.asarray(ijk_to_ras, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.allclose(matrix[3], [0, 0, 0, 1]):
        raise ValueError(f"ijk_to_ras must be a 4x4 homogeneous matrix with last row [0, 0, 0, 1], got "
                         f"{matrix.tolist() if matrix.size <= 16 else matrix.shape}.")
    return matrix


def _reverse_axes(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"expected a 3D {name}, got shape {array.shape}.")
    return array.transpose(2, 1, 0)


def kji_to_xyz(kji: np.ndarray) -> np.ndarray:
    """(K, J, I) Slicer array -> (X, Y, Z) = (I, J, K) array (a transposed view, no copy)."""
    return _reverse_axes(kji, "KJI array (scalar volume)")


def xyz_to_kji(xyz: np.ndarray) -> np.ndarray:
    """(X, Y, Z) array -> (K, J, I) Slicer array, C-contiguous (as ``updateVolumeFromArray`` expects)."""
    return np.ascontiguousarray(_reverse_axes(xyz, "(X, Y, Z) array"))


def kji_to_metatensor(kji: np.ndarray, ijk_to_ras: Any, dtype: Any = np.float32) -> Any:
    """Wrap a Slicer KJI array as a MONAI ``MetaTensor`` of shape (1, X, Y, Z) with ``affine = ijk_to_ras``.

    Args:
        kji: (K, J, I) voxel array, e.g. ``slicer.util.arrayFromVolume(node)``.
        ijk_to_ras: (4, 4) IJK-to-RAS matrix in mm (``node.GetIJKToRASMatrix``; see :func:`matrix_from_vtk`).
        dtype: voxel dtype of the result.

    Example:
        >>> image = kji_to_metatensor(np.zeros((3, 4, 5)), np.eye(4)); tuple(image.shape)
        (1, 5, 4, 3)
    """
    from monai.data import MetaTensor  # torch only when a tensor is requested

    affine = _check_affine(ijk_to_ras)
    xyz = np.ascontiguousarray(kji_to_xyz(kji), dtype=dtype)
    return MetaTensor(xyz[None], affine=affine)


def metatensor_to_kji(image: Any) -> tuple[np.ndarray, np.ndarray]:
    """(1, X, Y, Z) MetaTensor (or array with ``.affine``) -> (KJI array, 4x4 IJK-to-RAS matrix).

    Use the result with ``slicer.util.updateVolumeFromArray(node, kji)`` plus ``node.SetIJKToRASMatrix``, or
    ``slicer.util.addVolumeFromArray(kji, ijkToRAS=matrix)``.
    """
    data = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if data.ndim != 4 or data.shape[0] != 1:
        raise ValueError(f"expected a single-channel (1, X, Y, Z) image, got shape {data.shape}.")
    affine = image.affine
    affine = affine.detach().cpu().numpy() if hasattr(affine, "detach") else np.asarray(affine)
    return xyz_to_kji(data[0]), _check_affine(affine)


def matrix_from_vtk(vtk_matrix: Any) -> np.ndarray:
    """4x4 numpy matrix from any object with ``GetElement(row, column)`` (e.g. ``vtk.vtkMatrix4x4``)."""
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)
