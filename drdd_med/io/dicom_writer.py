"""Write a synthetic CT volume as a classic single-frame CT Image Storage series.

MONAI has no DICOM image writer and highdicom has no constructor for a new single-frame CT from an array, so the
series is assembled here with pydicom: one CT Image Storage file per slice (PS3.3 A.3), Explicit VR Little Endian,
placed in the source MR's study and frame of reference, flagged as derived, synthetic and not for diagnostic use,
with deterministic UIDs (:mod:`drdd_med.io.uids`) and references to the MR instance at the same position.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from drdd_med.io.atomic import atomic_dir
from drdd_med.io.uids import (
    DEFAULT_UID_PREFIX,
    placeholder_frame_of_reference_uid,
    placeholder_study_uid,
    sct_instance_uid,
    sct_series_uid,
)
from drdd_med.keys import HU_MAX, HU_MIN

__all__ = [
    "DEFAULT_SERIES_DESCRIPTION",
    "DEFAULT_DERIVATION_DESCRIPTION",
    "MANUFACTURER",
    "write_sct_series",
    "slice_geometry",
]

logger = logging.getLogger(__name__)

DEFAULT_SERIES_DESCRIPTION = "Synthetic CT (drdd_med) - NOT FOR DIAGNOSTIC USE"
DEFAULT_DERIVATION_DESCRIPTION = "Synthetic CT from MR by DRDD (decoupled residual denoising diffusion)"
MANUFACTURER = "drdd_med"
_IMAGE_COMMENTS = "Synthetic CT computed from MR by drdd_med. Not for diagnostic use."
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Stored value 0 is HU_MIN: uint16 pixels with RescaleIntercept = HU_MIN, RescaleSlope = 1 (PS3.3 C.8.2.1).
_RESCALE_INTERCEPT = int(HU_MIN)

_PATIENT_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "OtherPatientIDsSequence", "PatientComments", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence", "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup",
)
_STUDY_KEYWORDS = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
    "StudyDescription", "IssuerOfAccessionNumberSequence",
)
_MISC_KEYWORDS = ("SpecificCharacterSet", "PatientPosition", "BodyPartExamined", "FrameOfReferenceUID",
                  "PositionReferenceIndicator")
# Type 2 attributes of the Patient, General Study and Frame of Reference modules: present, possibly empty.
_TYPE2_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                   "StudyID", "AccessionNumber", "ReferringPhysicianName", "PositionReferenceIndicator",
                   "PatientPosition")  # PatientPosition: General Series Type 2C, required for CT


def slice_geometry(affine_ras: np.ndarray, num_slices: int) -> dict:
    """Per-slice DICOM geometry (LPS) of a volume indexed (i=column, j=row, k=slice) with a RAS affine.

    Args:
        affine_ras: (4, 4) RAS affine in mm, as carried by a MONAI MetaTensor.
        num_slices: number of slices along k.

    Returns:
        dict with ``orientation`` (6 floats, ImageOrientationPatient), ``positions`` ((num_slices, 3)
        ImagePositionPatient in mm), ``pixel_spacing`` ([row spacing, column spacing] in mm: row first),
        ``slice_spacing`` (mm) and ``normal`` (unit slice normal, LPS).

    Raises:
        ValueError: if the affine is not 4x4, has a zero axis, or its in-plane axes are not orthogonal / the k axis
            is not along the slice normal (DICOM single-frame images cannot represent a sheared grid).
    """
    affine_ras = np.asarray(affine_ras, dtype=np.float64)
    if affine_ras.shape != (4, 4) or not np.all(np.isfinite(affine_ras)):
        raise ValueError(f"affine_ras must be a finite 4x4 matrix, got shape {affine_ras.shape}.")
    lps = _LPS_FROM_RAS @ affine_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"affine_ras has a zero-length axis (spacing {spacing.tolist()}); pass a valid affine.")
    row_cos, col_cos, slice_dir = (lps[:3, i] / spacing[i] for i in range(3))
    if abs(float(row_cos @ col_cos)) > 1e-4:
        raise ValueError("affine_ras in-plane axes (i, j) are not orthogonal; resample to an orthogonal grid first.")
    normal = np.cross(row_cos, col_cos)
    if abs(abs(float(normal @ slice_dir)) - 1.0) > 1e-4:
        raise ValueError("affine_ras k axis is not perpendicular to the (i, j) plane (sheared grid); "
                         "resample to an orthogonal grid before writing DICOM.")
    positions = np.stack([(lps @ np.array([0.0, 0.0, k, 1.0]))[:3] for k in range(num_slices)])
    return {
        "orientation": [*row_cos.tolist(), *col_cos.tolist()],
        "positions": positions,
        "pixel_spacing": [float(spacing[1]), float(spacing[0])],  # PS3.3 C.7.6.2.1.1: row spacing first
        "slice_spacing": float(spacing[2]),
        "normal": normal,
    }


def _ds(value: float) -> str:
    """Format a float for a DS element (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6e}"


def _validate_sources(source_datasets: Sequence[Dataset]) -> list[Dataset]:
    sources = list(source_datasets)
    if not sources:
        raise ValueError("source_datasets is empty; pass the source series datasets or None for non-DICOM input.")
    missing = [kw for kw in ("SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID", "SOPClassUID",
                             "ImagePositionPatient") if kw not in sources[0]]
    if missing:
        raise ValueError(f"source_datasets lack required attributes {missing}; pass the datasets of the source "
                         "DICOM series (as returned by load_series).")
    for kw in ("SeriesInstanceUID", "StudyInstanceUID"):
        values = {str(ds.get(kw, "")) for ds in sources}
        if len(values) != 1:
            raise ValueError(f"source_datasets mix {len(values)} different {kw} values; pass a single series.")
    return sources


def _match_sources(positions: np.ndarray, normal: np.ndarray, slice_spacing: float,
                   sources: list[Dataset]) -> list[Dataset | None]:
    """For each sCT slice, the source instance at the same position along the normal (within half a slice)."""
    src_dist = np.array([np.asarray(ds.ImagePositionPatient, dtype=np.float64) @ normal for ds in sources])
    matched: list[Dataset | None] = []
    for pos in positions:
        gap = np.abs(src_dist - pos @ normal)
        best = int(np.argmin(gap))
        matched.append(sources[best] if gap[best] <= 0.5 * slice_spacing + 1e-3 else None)
    unmatched = sum(m is None for m in matched)
    if unmatched:
        logger.warning("%d of %d sCT slices have no source instance at the same position; their "
                       "SourceImageSequence is omitted.", unmatched, len(matched))
    return matched


def _series_template(sources: list[Dataset] | None, *, source_key: str, model_version: str, uid_prefix: str,
                     series_description: str, derivation_description: str, series_number: int | None,
                     body_part_examined: str | None, created: dt.datetime) -> Dataset:
    """Attributes shared by every slice: patient, study, frame of reference, series, equipment, pixel format."""
    ds = Dataset()
    if sources is not None:
        src = sources[0]
        for kw in (*_PATIENT_KEYWORDS, *_STUDY_KEYWORDS, *_MISC_KEYWORDS):
            if kw in src:
                setattr(ds, kw, src[kw].value)
        if series_number is None and src.get("SeriesNumber") not in (None, ""):
            series_number = int(src.SeriesNumber) + 1000
    else:
        # Anonymous placeholder patient/study: nothing identifying, stable for the same seed.
        digest = hashlib.sha256(source_key.encode()).hexdigest()[:16].upper()
        ds.PatientName = "ANONYMOUS^"
        ds.PatientID = f"DRDD-{digest}"
        ds.StudyInstanceUID = placeholder_study_uid(source_key, uid_prefix)
        ds.FrameOfReferenceUID = placeholder_frame_of_reference_uid(source_key, uid_prefix)
        ds.StudyDescription = "drdd_med synthetic CT (non-DICOM source)"
        ds.StudyID = "DRDD"
        ds.StudyDate, ds.StudyTime = created.strftime("%Y%m%d"), created.strftime("%H%M%S")
    for kw in _TYPE2_KEYWORDS:
        if kw not in ds:
            setattr(ds, kw, "")
    if body_part_examined is not None:
        ds.BodyPartExamined = body_part_examined
    if "BodyPartExamined" not in ds:
        logger.warning("BodyPartExamined is unknown; validators will report a missing Laterality (Type 2C). "
                       "Pass body_part_examined=...")
    ds.SpecificCharacterSet = ds.get("SpecificCharacterSet", "ISO_IR 192") or "ISO_IR 192"
    date, time = created.strftime("%Y%m%d"), created.strftime("%H%M%S")
    ds.Modality = "CT"
    ds.SeriesInstanceUID = sct_series_uid(source_key, model_version, uid_prefix)
    ds.SeriesNumber = 1000 if series_number is None else int(series_number)
    ds.SeriesDescription = series_description
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "drdd_med synthetic CT"
    ds.SoftwareVersions = [f"drdd_med {_package_version()}", f"model {model_version}"]
    # Value 3 of ImageType must be AXIAL (or LOCALIZER) for CT (PS3.3 C.8.2.1.1.1) whatever the orientation.
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.DerivationDescription = derivation_description
    ds.ImageComments = _IMAGE_COMMENTS
    ds.BurnedInAnnotation = "NO"
    ds.KVP = ""  # CT Image module Type 2: present, empty (no X-ray acquisition took place)
    ds.AcquisitionNumber = ""
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = _RESCALE_INTERCEPT, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = [40, 500], [400, 2000]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "BONE"]
    return ds


def _package_version() -> str:
    from drdd_med import __version__

    return __version__


def _source_reference(src: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = src.SOPClassUID
    item.ReferencedSOPInstanceUID = src.SOPInstanceUID
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator = "121322", "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    return item


def _slice_dataset(template: Dataset, stored: np.ndarray, k: int, geometry: dict, source: Dataset | None,
                   *, source_key: str, model_version: str, uid_prefix: str) -> Dataset:
    """One CT instance for slice k; ``stored`` is the (Rows, Columns) uint16 pixel slice."""
    ds = Dataset()
    ds.update(template)
    sop_uid = sct_instance_uid(source_key, model_version, k, uid_prefix)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
    ds.InstanceNumber = k + 1
    position = geometry["positions"][k]
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in geometry["orientation"]]
    ds.PixelSpacing = [_ds(v) for v in geometry["pixel_spacing"]]
    ds.SliceThickness = _ds(geometry["slice_spacing"])
    ds.SpacingBetweenSlices = _ds(geometry["slice_spacing"])
    ds.SliceLocation = _ds(float(position @ geometry["normal"]))
    # Image Pixel module (Rows, Columns, SamplesPerPixel, Bits*, PixelRepresentation, PixelData) from the array.
    ds.set_pixel_data(stored, "MONOCHROME2", 16, generate_instance_uid=False)
    if source is not None:
        ds.SourceImageSequence = DicomSequence([_source_reference(source)])
        series_item = Dataset()
        series_item.SeriesInstanceUID = source.SeriesInstanceUID
        instance = Dataset()
        instance.ReferencedSOPClassUID = source.SOPClassUID
        instance.ReferencedSOPInstanceUID = source.SOPInstanceUID
        series_item.ReferencedInstanceSequence = DicomSequence([instance])
        ds.ReferencedSeriesSequence = DicomSequence([series_item])
    return ds


def write_sct_series(
    hu_volume: np.ndarray,
    affine_ras: np.ndarray,
    out_dir: str | os.PathLike,
    source_datasets: Sequence[Dataset] | None = None,
    *,
    model_version: str,
    series_description: str = DEFAULT_SERIES_DESCRIPTION,
    derivation_description: str = DEFAULT_DERIVATION_DESCRIPTION,
    series_number: int | None = None,
    uid_prefix: str = DEFAULT_UID_PREFIX,
    source_uid_seed: str | None = None,
    body_part_examined: str | None = None,
    created: dt.datetime | None = None,
) -> list[Path]:
    """Write a synthetic CT volume as a CT Image Storage series, one file per k slice.

    The sCT is written on the grid it is given (write it after ``Invertd``, on the source MR's native grid). The
    slices follow the volume's k axis whatever its orientation: a sagittal or oblique MR gives a sagittal or oblique
    CT series, whose ImageType value 3 is nevertheless ``AXIAL``, the only non-localizer value the standard allows
    for CT (PS3.3 C.8.2.1.1.1). Pixels are stored as uint16 with RescaleIntercept -1024 after clipping to
    [-1024, 3071] HU and rounding to the nearest integer.

    Args:
        hu_volume: (X, Y, Z) or (1, X, Y, Z) array in HU, index order (i=column, j=row, k=slice) as in a MONAI
            MetaTensor. NaN or inf is rejected.
        affine_ras: (4, 4) RAS affine in mm of ``hu_volume``.
        out_dir: folder for the series; it is replaced as a whole (:func:`~drdd_med.io.atomic.atomic_dir`: written
            to a temporary folder beside it, then renamed; folder 0o755, files 0o644 with umask 022). It may only
            contain ``.dcm`` files from a previous run.
        source_datasets: datasets of the source DICOM series (any order). Patient, study and frame of reference are
            copied from them and each slice references the source instance at the same position. ``None`` for
            non-DICOM input: an anonymous placeholder patient/study and a new frame of reference are derived from
            ``source_uid_seed``.
        model_version: model / bundle version; part of every UID and of SoftwareVersions.
        series_description: SeriesDescription (LO, at most 64 characters); it must say the images are synthetic.
        derivation_description: DerivationDescription (model, steps, noise level).
        series_number: SeriesNumber; default source SeriesNumber + 1000, or 1000.
        uid_prefix: UID root for the new UIDs.
        source_uid_seed: required when ``source_datasets`` is None: a stable string identifying the input.
        body_part_examined: BodyPartExamined (e.g. ``"HEAD"``); default copied from the source.
        created: creation date/time stored in Series/Content/InstanceCreation Date/Time; default now. Pass a fixed
            value for byte-identical re-runs (UIDs and pixels are always identical).

    Returns:
        Paths of the written files, in k order.

    Raises:
        ValueError: on a malformed volume, affine, description or source series, or a non-series ``out_dir``.

    Example:
        >>> image, datasets = load_series("mr_dicom/")                          # doctest: +SKIP
        >>> write_sct_series(hu, image.affine, "sct_dicom/", datasets, model_version="drdd-1.0")  # doctest: +SKIP
    """
    volume = np.asarray(hu_volume, dtype=np.float64)
    if volume.ndim == 4 and volume.shape[0] == 1:
        volume = volume[0]
    if volume.ndim != 3 or min(volume.shape) < 1 or max(volume.shape[:2]) > 65535:
        raise ValueError(f"hu_volume must be (X, Y, Z) or (1, X, Y, Z) with X, Y <= 65535, got {volume.shape}.")
    if not np.all(np.isfinite(volume)):
        raise ValueError("hu_volume contains NaN or inf; fix the prediction before writing DICOM.")
    if not model_version:
        raise ValueError("model_version must be a non-empty string (it is part of every UID).")
    if len(series_description) > 64:
        raise ValueError(f"series_description has {len(series_description)} characters; DICOM LO allows 64.")
    sources = None if source_datasets is None else _validate_sources(source_datasets)
    if sources is None and not source_uid_seed:
        raise ValueError("source_uid_seed is required when source_datasets is None (non-DICOM input): pass a stable "
                         "string such as the input file name so that re-runs get the same UIDs.")
    source_key = str(sources[0].SeriesInstanceUID) if sources is not None else str(source_uid_seed)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(p.suffix != ".dcm" for p in out_dir.iterdir())):
        raise ValueError(f"out_dir {out_dir} exists and is not a previous sCT series folder (only .dcm files); "
                         "choose an empty or new folder.")
    geometry = slice_geometry(affine_ras, volume.shape[2])
    created = created or dt.datetime.now()
    template = _series_template(sources, source_key=source_key, model_version=model_version, uid_prefix=uid_prefix,
                                series_description=series_description,
                                derivation_description=derivation_description, series_number=series_number,
                                body_part_examined=body_part_examined, created=created)
    matched = (_match_sources(geometry["positions"], geometry["normal"], geometry["slice_spacing"], sources)
               if sources is not None else [None] * volume.shape[2])
    stored = (np.rint(np.clip(volume, HU_MIN, HU_MAX)) - _RESCALE_INTERCEPT).astype(np.uint16)
    names = [f"CT{k + 1:05d}.dcm" for k in range(volume.shape[2])]
    with atomic_dir(out_dir) as tmp_dir:
        for k, name in enumerate(names):
            ds = _slice_dataset(template, stored[:, :, k].T, k, geometry, matched[k], source_key=source_key,
                                model_version=model_version, uid_prefix=uid_prefix)
            ds.save_as(tmp_dir / name, enforce_file_format=True)
    logger.info("wrote %d-slice synthetic CT series to %s", len(names), out_dir)
    return [out_dir / name for name in names]
