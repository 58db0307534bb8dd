"""Input checks: every rule that refuses an input which cannot give a usable synthetic CT, in one place.

Each check raises ``ValueError("<path>: <problem>; <what to do>.")`` before anything is written, so the CLI prints
one line per bad input, writes the good ones and leaves existing outputs alone. ``docs/inputs.md`` lists every case
with its message and the reason for the decision. Three groups:

* header checks, run by the readers before voxel data is read (:func:`check_nifti_header`, :func:`check_size`):
  unusable NIfTI geometry, non-scalar voxels, volumes too large for this machine;
* source checks on the loaded volume, run by :func:`load_source` between loading and intensity normalisation
  (:func:`check_source`): 4D / multi-volume files, the wrong modality, NaN or inf voxels, images without signal;
* :func:`load_source` itself, the predictor's input path: it runs the inference preprocessing around those checks and
  turns MONAI's wrapped exceptions back into the reader's own one-line message.

DICOM structure (series selection, gaps, duplicates, tilt, multi-frame, decoders) is validated by
:mod:`drdd_med.io.dicom_series`, which calls :func:`check_size` before decoding pixels.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BYTES_PER_VOXEL",
    "MAX_VOXELS_ENV",
    "check_input_path",
    "check_nifti_header",
    "check_size",
    "check_source",
    "dicom_modality",
    "load_source",
    "read_nifti_header",
]

logger = logging.getLogger(__name__)

#: Peak memory of one translation per input voxel: ``benchmarks/inference.py`` measures 2335 MB for 512x512x300
#: (78.6 M voxels, about 30 B/voxel: float32 source, padded copy, prediction, inversion and the reader's buffers).
BYTES_PER_VOXEL = 30
#: Environment variable: a hard voxel limit that replaces the default "estimated memory > this machine's memory".
MAX_VOXELS_ENV = "DRDD_MED_MAX_VOXELS"

#: ``source_modality`` values of a model config that are not DICOM Modality codes -> the code their series carry.
_MODALITY_ALIASES = {"CBCT": "CT", "MRI": "MR", "PET": "PT"}
#: DICOM Modality codes (PS3.3 C.7.3.1.1.1) a source series can carry; other config values are not checked.
_DICOM_MODALITIES = {"CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "OT", "RTIMAGE"}
_WARNED: set[str] = set()


# ----------------------------------------------------------------------------------------------- paths and size
def check_input_path(path: str | Path) -> None:
    """Refuse a path that is neither a NIfTI file nor a folder (a DICOM series is given as its folder)."""
    from drdd_med.io.nifti import is_nifti

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder.")
    if not (path.is_dir() or is_nifti(path)):
        raise ValueError(f"{path}: expected a NIfTI file (.nii / .nii.gz) or a folder holding one DICOM series.")


def _memory_bytes() -> int | None:
    """Memory this process may use: physical memory, or the cgroup (container) limit when that is lower."""
    total: int | None = None
    try:
        total = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        pass
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        text = ""
    if text.isdigit():
        total = int(text) if total is None else min(total, int(text))
    return total


def check_size(name: str | Path, shape: Sequence[int]) -> None:
    """Refuse a volume whose translation would need more memory than this machine has, before it is read.

    An out-of-memory kill would end a whole batch (and lose the cases after it), so the estimate
    ``voxels x BYTES_PER_VOXEL`` is compared with the machine's memory; ``DRDD_MED_MAX_VOXELS`` sets a fixed voxel
    limit instead (site policy, tests).

    Args:
        name: the file or folder, for the message.
        shape: the volume's shape (all axes, channels included).
    """
    voxels = math.prod(int(s) for s in shape)
    need = voxels * BYTES_PER_VOXEL
    shape_text = "x".join(str(int(s)) for s in shape)
    what = f"{name}: {shape_text} volume ({voxels / 1e6:.0f} M voxels) needs about {need / 2**30:.1f} GiB of memory"
    advice = "crop or resample it to fewer voxels, or translate it on a larger machine."
    limit_text = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if limit_text:
        try:
            limit = int(float(limit_text))
        except ValueError:
            raise ValueError(f"{MAX_VOXELS_ENV}={limit_text!r}: expected a voxel count such as 600e6.") from None
        if voxels > limit:
            raise ValueError(f"{what}, more than the limit {MAX_VOXELS_ENV}={limit_text}; {advice}")
        return
    memory = _memory_bytes()
    if memory is not None and need > memory:
        raise ValueError(f"{what}, more than this machine's {memory / 2**30:.1f} GiB; {advice}")


# ----------------------------------------------------------------------------------------------- NIfTI header
def read_nifti_header(path: str | Path) -> Any:
    """The NIfTI-1/-2 header exactly as stored: ``nib.load`` silently replaces a zero voxel spacing by 1 mm.

    Raises:
        ValueError: the file is not a readable NIfTI file (truncated, empty, not NIfTI).
    """
    import nibabel as nib
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as f:
            start = f.read(4)
            sizes = {int.from_bytes(start, "little"), int.from_bytes(start, "big")} if len(start) == 4 else set()
            klass = nib.Nifti2Header if 540 in sizes else nib.Nifti1Header
            f.seek(0)
            return klass.from_fileobj(f, check=False)
    except Exception as exc:  # gzip, EOF, struct and nibabel errors alike mean the same to a user
        raise ValueError(f"{path}: unreadable NIfTI file ({type(exc).__name__}: {exc}); it is truncated or corrupt; "
                         "re-export it.") from exc


def _stored_affine(header: Any) -> tuple[np.ndarray, str]:
    """The voxel-to-world affine nibabel would use (sform, else qform, else pixdim only), from raw header fields,
    and how to describe it when it is degenerate."""
    pixdim = np.asarray(header["pixdim"], dtype=np.float64)
    spacing = [float(v) for v in pixdim[1:4]]
    if int(header["sform_code"]) > 0:
        affine = np.eye(4)
        affine[:3] = np.stack([np.asarray(header[k], dtype=np.float64) for k in ("srow_x", "srow_y", "srow_z")])
        return affine, f"the sform (sform_code {int(header['sform_code'])}) is degenerate (a zero, NaN or inf axis)"
    if int(header["qform_code"]) > 0:
        b, c, d = (float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d"))
        a = math.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
        rotation = np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                             [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                             [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        affine = np.eye(4)
        affine[:3, :3] = rotation * (pixdim[1:4] * np.array([1.0, 1.0, qfac]))
        affine[:3, 3] = [float(header[k]) for k in ("qoffset_x", "qoffset_y", "qoffset_z")]
        code = int(header["qform_code"])
        return affine, f"the qform (qform_code {code}) with voxel spacing {spacing} mm is degenerate"
    affine = np.diag([-pixdim[1], pixdim[2], pixdim[3], 1.0])
    return affine, f"voxel spacing {spacing} mm and no orientation (qform_code = sform_code = 0)"


def check_nifti_header(path: str | Path) -> None:
    """Refuse a NIfTI file whose header cannot give a usable volume, before its voxels are read.

    Refused: fewer than 2 axes or an empty axis; non-scalar voxels (RGB, complex); a voxel-to-world mapping with a zero,
    NaN or inf spacing (nibabel would invent a 1 mm grid and the sCT could not be put back on the patient); a volume
    too large for this machine (:func:`check_size`). A header without orientation but with a valid spacing is
    accepted with a warning: the sCT is written on exactly the same (ANALYZE-style) grid as the input.
    """
    header = read_nifti_header(path)
    dim = [int(d) for d in np.asarray(header["dim"])]
    ndim = dim[0]
    shape = tuple(dim[1:1 + ndim]) if 1 <= ndim <= 7 else ()
    if ndim < 2 or ndim > 7 or min(shape, default=0) < 1:
        raise ValueError(f"{path}: the header describes no image (dim {dim}); a 2D or 3D volume is needed.")
    dtype = header.get_data_dtype()
    if dtype.fields is not None or dtype.kind not in "biuf":
        kind = "RGB colour" if dtype.fields else ("complex" if dtype.kind == "c" else "not numbers")
        raise ValueError(f"{path}: voxels are {dtype} ({kind}); give a greyscale (scalar) volume.")
    spatial = min(ndim, 3)
    affine, source = _stored_affine(header)
    columns = affine[:3, :spatial]
    singular = not np.all(np.isfinite(affine)) or np.linalg.matrix_rank(columns, tol=1e-6 * max(
        1.0, float(np.abs(columns).max(initial=0.0)))) < spatial
    if singular:
        raise ValueError(f"{path}: unusable geometry: {source}; the sCT could not be put back on the patient. "
                         "Re-export the image with its geometry (e.g. from DICOM with dcm2niix).")
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0 and str(path) not in _WARNED:
        _WARNED.add(str(path))  # once per file, not once per training epoch
        logger.warning("%s: no orientation in the header (qform_code = sform_code = 0); using its voxel grid as "
                       "nibabel reads it (spacing from pixdim, left-right flipped like ANALYZE)", path)
    check_size(path, shape)


# ----------------------------------------------------------------------------------------------- the loaded source
def dicom_modality(source_modality: str) -> str | None:
    """The DICOM Modality code a source series of a model must carry (``"CBCT"`` -> ``"CT"``), None if unknown."""
    code = str(source_modality).strip().upper()
    code = _MODALITY_ALIASES.get(code, code)
    return code if code in _DICOM_MODALITIES else None


def check_source(path: str | Path, image: Any, source_modality: str = "MR", source_channels: int = 1) -> Any:
    """Refuse a loaded source the model cannot translate; returns it unchanged otherwise.

    Args:
        path: the input, for messages.
        image: the (C, X, Y, Z) MetaTensor from ``LoadImaged(..., ensure_channel_first=True)``.
        source_modality: the model config's ``source_modality``; a DICOM series of another Modality is refused.
        source_channels: channels the model expects (1: a 4D file with several volumes is refused).

    Raises:
        ValueError: several volumes / wrong channel count, wrong modality, NaN or inf voxels, no signal.
    """
    import torch

    meta: Mapping[str, Any] = getattr(image, "meta", {}) or {}
    if image.ndim != 4 or int(image.shape[0]) != int(source_channels):
        dim = meta.get("dim")
        stored = (tuple(int(d) for d in np.asarray(dim)[1:1 + int(np.asarray(dim)[0])]) if dim is not None
                  else tuple(int(s) for s in image.shape))
        if int(source_channels) == 1:
            raise ValueError(f"{path}: {len(stored)}D image (shape {stored}): give one 3D volume (a 4D file holding "
                             "a single volume, shape (X, Y, Z, 1), is accepted).")
        raise ValueError(f"{path}: image of shape {stored} has {int(image.shape[0])} channel(s); the model expects "
                         f"{int(source_channels)} volumes of one 3D grid.")
    found, expected = str(meta.get("modality", "") or "").upper(), dicom_modality(source_modality)
    if found and expected and found != expected:
        uid = meta.get("source_series_uid", "")
        raise ValueError(f"{path}: series {uid} has Modality {found}, but this model translates {source_modality} "
                         f"(model_config.json source_modality); pass a series of Modality {expected}.")
    values = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
    bad = int(values.numel() - torch.isfinite(values).sum())
    if bad:
        raise ValueError(f"{path}: {bad} of {values.numel()} voxels are NaN (or inf); the image cannot be normalised. "
                         "Replace them (e.g. by 0) or re-export the volume.")
    low, high = float(values.min()), float(values.max())
    if low == high:
        raise ValueError(f"{path}: the image carries no signal (every voxel is {low:g}); it would translate to a "
                         "blank sCT. Check the export.")
    return image


# ----------------------------------------------------------------------------------------------- predictor input path
def _reader_error(path: Path, exc: BaseException) -> ValueError:
    """The innermost error of a MONAI ``Compose`` failure as a ``ValueError`` whose message starts with the path."""
    inner = exc
    while isinstance(inner, RuntimeError) and inner.__cause__ is not None:
        inner = inner.__cause__
    text = (str(inner).strip().splitlines() or [""])[0]
    if isinstance(inner, ValueError) and text.startswith(str(path)):
        return inner  # the reader's own message (a DicomSeriesError stays one)
    error = ValueError(f"{path}: {text}" if isinstance(inner, ValueError)
                       else f"{path}: cannot be read ({type(inner).__name__}: {text}).")
    error.__cause__ = exc
    return error


def _run(preprocessing: Any, data: dict[str, Any], path: Path, **span: int) -> dict[str, Any]:
    """``preprocessing(data, start=..., end=...)``, failing with :func:`_reader_error` (raised outside the handler,
    so that the reader's exception does not get MONAI's wrapper as its context)."""
    try:
        return preprocessing(data, **span)
    except Exception as exc:
        error = _reader_error(path, exc)
    raise error


def load_source(path: str | Path, preprocessing: Any, source_modality: str = "MR", source_channels: int = 1,
                image_key: str | None = None) -> dict[str, Any]:
    """Run the inference preprocessing on one input with :func:`check_source` between loading and normalisation.

    Args:
        path: NIfTI file or DICOM series folder.
        preprocessing: the ``Compose`` of :func:`drdd_med.transforms.pipelines.inference_transforms`; its first
            ``LoadImaged`` is where it is split.
        source_modality: the model's source modality.
        source_channels: channels the model expects.
        image_key: item key of the source (default ``keys.IMAGE``).

    Returns:
        The preprocessed item, as ``preprocessing({image_key: str(path)})`` would return it.

    Raises:
        ValueError: the input is missing, unreadable or refused; the message starts with the path.
    """
    from monai.transforms import LoadImaged

    from drdd_med import keys

    path, key = Path(path), image_key or keys.IMAGE
    check_input_path(path)
    split = next((i + 1 for i, t in enumerate(preprocessing.transforms) if isinstance(t, LoadImaged)), None)
    if split is None:
        raise TypeError("load_source: the preprocessing has no LoadImaged to check the source after.")
    data = _run(preprocessing, {key: str(path)}, path, end=split)
    check_source(path, data[key], source_modality, source_channels)
    return _run(preprocessing, data, path, start=split)
