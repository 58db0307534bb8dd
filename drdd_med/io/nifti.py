"""NIfTI writing and the reader used by every drdd_med pipeline (NIfTI file or DICOM series folder)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader, NibabelReader

from drdd_med.io.dicom_series import DicomSeriesReader

__all__ = ["NIFTI_SUFFIXES", "VolumeReader", "is_nifti", "save_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    """Whether a path names a NIfTI file by its suffix (``.nii`` or ``.nii.gz``)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def save_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray, dtype: Any = None) -> Path:
    """Write an (X, Y, Z) array as NIfTI atomically (temporary file in the same folder, then rename).

    Args:
        path: ``.nii`` or ``.nii.gz`` destination.
        array: (X, Y, Z) voxels.
        affine: (4, 4) voxel-to-RAS affine in mm.
        dtype: on-disk dtype (default: the array's).

    Returns:
        The written path.
    """
    import nibabel as nib

    path = Path(path)
    if not is_nifti(path):
        raise ValueError(f"{path}: NIfTI output must end with .nii or .nii.gz.")
    data = np.asarray(array, dtype=dtype) if dtype is not None else np.asarray(array)
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm")
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        nib.save(image, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class VolumeReader(ImageReader):
    """MONAI ``ImageReader`` that reads a NIfTI file with nibabel or a DICOM series folder with our series reader.

    Data specs may mix both kinds of value, so the pipelines pass this reader to ``LoadImaged`` explicitly.

    Args:
        dicom_rules: series selection conditions for folders (see ``drdd_med.io.dicom_series.select_series``).
    """

    def __init__(self, dicom_rules: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.dicom = DicomSeriesReader(rules=dicom_rules)
        self.nifti = NibabelReader(as_closest_canonical=False, squeeze_non_spatial_dims=True)

    def _pick(self, filename: Sequence[str | Path] | str | Path) -> ImageReader:
        if self.dicom.verify_suffix(filename):
            return self.dicom
        names = list(filename) if isinstance(filename, (list, tuple)) else [filename]
        if all(is_nifti(n) for n in names):
            return self.nifti
        raise ValueError(f"{names}: expected a .nii/.nii.gz file or a DICOM series folder.")

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """True for NIfTI files and folders."""
        try:
            self._pick(filename)
        except ValueError:
            return False
        return True

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> tuple[ImageReader, Any]:
        """Read with the matching reader; returns ``(reader, its image object)``."""
        reader = self._pick(data)
        return reader, reader.read(data, **kwargs)

    def get_data(self, img: tuple[ImageReader, Any]) -> tuple[np.ndarray, dict]:
        """Delegate to the reader that read the image."""
        reader, obj = img
        return reader.get_data(obj)
