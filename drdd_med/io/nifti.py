"""NIfTI writing and the reader used by every drdd_med pipeline (NIfTI file or DICOM series folder)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader, NibabelReader

from drdd_med.io.atomic import atomic_file
from drdd_med.io.dicom_series import DicomSeriesReader

__all__ = ["NIFTI_SUFFIXES", "VolumeReader", "is_nifti", "save_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    """Whether a path names a NIfTI file by its suffix (``.nii`` or ``.nii.gz``)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def save_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray, dtype: Any = None) -> Path:
    """Write an (X, Y, Z) array as NIfTI atomically (:func:`~drdd_med.io.atomic.atomic_file`, mode 0o644).

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
    with atomic_file(path) as tmp:
        nib.save(image, tmp)
    return path


class _Refused:
    """A failed read: :meth:`VolumeReader.read` returns it and :meth:`VolumeReader.get_data` raises its error."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class VolumeReader(ImageReader):
    """MONAI ``ImageReader`` that reads a NIfTI file with nibabel or a DICOM series folder with our series reader.

    Data specs may mix both kinds of value, so the pipelines pass this reader to ``LoadImaged`` explicitly.

    Its verdict is final: given an explicit reader, MONAI's ``LoadImage`` catches an exception from ``read`` and tries
    its default readers instead (``PydicomReader`` then reads a DICOM folder this reader refused, gaps and all, and
    the real problem is lost). So ``read`` never raises: a failure is returned and raised by ``get_data``, which
    ``LoadImage`` does not guard. NIfTI headers are checked before the voxels are read
    (:func:`drdd_med.io.input_checks.check_nifti_header`), and a 2D NIfTI is read as a one-slice volume (X, Y, 1)
    with its own affine.

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

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> tuple[ImageReader | None, Any]:
        """Read with the matching reader; returns ``(reader, its image object)``, or ``(None, _Refused)``."""
        from drdd_med.io.input_checks import check_nifti_header

        try:
            reader = self._pick(data)
            if reader is self.nifti:
                names = list(data) if isinstance(data, (list, tuple)) else [data]
                for name in names:
                    check_nifti_header(name)
                try:
                    return reader, reader.read(data, **kwargs)
                except Exception as exc:
                    _raise_unreadable(names[0], exc)
            return reader, reader.read(data, **kwargs)
        except Exception as exc:  # raised by get_data, see the class docstring
            return None, _Refused(exc)

    def get_data(self, img: tuple[ImageReader | None, Any]) -> tuple[np.ndarray, dict]:
        """Delegate to the reader that read the image (or raise why it could not)."""
        reader, obj = img
        if isinstance(obj, _Refused):
            raise obj.error
        if reader is not self.nifti:
            return reader.get_data(obj)
        try:
            array, meta = reader.get_data(obj)
        except Exception as exc:  # the voxel data is read here: a truncated file fails now
            _raise_unreadable(_nifti_name(obj), exc)
        if array.ndim == 2:  # one slice stored as a 2D image: a (X, Y, 1) volume on the same affine
            array = array[..., None]
            meta["spatial_shape"] = np.asarray(array.shape)
            affine = np.asarray(meta["affine"], dtype=np.float64)
            if abs(np.linalg.det(affine[:3, :3])) < 1e-12:  # no third axis stored: a unit slice normal
                normal = np.cross(affine[:3, 0], affine[:3, 1])
                affine[:3, 2] = normal / np.linalg.norm(normal)
                meta["affine"], meta["original_affine"] = affine, affine.copy()
        return array, meta


def _nifti_name(obj: Any) -> str:
    images = obj if isinstance(obj, (list, tuple)) else [obj]
    return str(images[0].get_filename()) if images and hasattr(images[0], "get_filename") else "NIfTI file"


def _raise_unreadable(name: str | Path, exc: Exception) -> None:
    """Re-raise a nibabel failure as one message naming the file (a message that already does is kept)."""
    if isinstance(exc, ValueError) and str(exc).startswith(str(name)):
        raise exc
    raise ValueError(f"{name}: unreadable NIfTI file ({type(exc).__name__}: {exc}); it is truncated or corrupt; "
                     "re-export it.") from exc
