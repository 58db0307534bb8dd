"""Read a classic single-frame DICOM image series as a RAS volume.

The procedure follows DICOM PS3.3 C.7.6.2 (Image Plane Module): files are grouped by SeriesInstanceUID, one
series is selected by rules, its slices are sorted by their position along the slice normal (never by
InstanceNumber, which need not follow position), the geometry is validated (one orientation, one pixel grid,
uniform slice spacing, no gaps or duplicates), the modality LUT (RescaleSlope/Intercept, PS3.3 C.11.1) is applied
and the voxels are returned with a RAS affine, in MONAI's array index order (i = column, j = row, k = slice).

Headers are read once: :func:`find_series` parses each file's header (pixel data stays on disk) and remembers the
last scans of a few folders, so a second scan of unchanged files (same path, inode, size and modification time)
parses nothing; the pixels are then read and decoded once, file by file. Entry points:

* :func:`read_series` returns a :class:`DicomSeries`: the sorted headers (``datasets``), the RAS affine and the
  voxels (or only the validated headers, ``pixels=False``);
* :func:`load_series` returns ``(MetaTensor (1, X, Y, Z), datasets)``; the datasets (sorted like the slices)
  are what a DICOM writer needs to reference the source series. They are kept out of the MetaTensor's meta
  so that collation, ``Invertd`` and ``SaveImage`` never carry them around;
* :class:`DicomSeriesReader` is a MONAI ``ImageReader``, so ``LoadImaged(keys, reader=DicomSeriesReader())``
  gives a MetaTensor whose ``applied_operations`` make ``Invertd`` work unchanged. Its meta holds
  ``source_series_uid`` (``SOURCE_SERIES_UID_KEY``) and ``modality``; :func:`load_series_datasets` with the
  folder and that UID gives the sorted headers without reading any file again.

Selection rules are those of :mod:`drdd_med.io.dicom_rules` (the PACS job uses the same engine).
"""

from __future__ import annotations

import logging
import stat
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader

from drdd_med.io.dicom_rules import first_match, parse_rules
from drdd_med.io.input_checks import check_size

__all__ = [
    "DicomSeries",
    "DicomSeriesError",
    "DicomSeriesReader",
    "SOURCE_SERIES_UID_KEY",
    "check_series",
    "find_series",
    "is_multiframe",
    "load_series",
    "load_series_datasets",
    "read_series",
    "select_series",
    "series_affine",
    "sort_series",
]

logger = logging.getLogger(__name__)

#: Meta key holding the SeriesInstanceUID of the series a volume was read from.
SOURCE_SERIES_UID_KEY = "source_series_uid"

_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_IOP_TOL = 1e-4  # direction cosines are written with ~6 decimals
_SPACING_REL_TOL, _SPACING_ABS_TOL_MM = 0.01, 0.01
#: Most headers :func:`find_series` keeps from its last scans (a few series; pixel data is never kept).
_SCAN_MEMO_HEADERS = 4096
_SCANS: OrderedDict[tuple[str, bool], tuple[tuple, dict[str, list[Any]]]] = OrderedDict()
_SCANS_LOCK = threading.Lock()


class DicomSeriesError(ValueError):
    """A DICOM folder or series cannot be read as one regular volume; the message names the file or folder."""


# ----------------------------------------------------------------------------------------------- grouping
def find_series(folder: str | Path, recursive: bool = True) -> dict[str, list[Any]]:
    """Group the image files of a folder by SeriesInstanceUID.

    Non-DICOM files, hidden files, DICOMDIR files and non-image objects (no ImagePositionPatient /
    ImageOrientationPatient / Rows, e.g. RT structure sets or reports) are skipped. A file that starts like DICOM but
    cannot be parsed is an error, because silently dropping it would hide a missing slice. The headers of the last
    scans are kept (at most ``_SCAN_MEMO_HEADERS``): scanning unchanged files again (same paths, inodes, sizes and
    modification times) parses nothing, so reading a series and then asking for its headers costs one parse.

    Args:
        folder: folder holding the files.
        recursive: also look in sub-folders.

    Returns:
        ``{SeriesInstanceUID: [pydicom Dataset headers, in file-name order]}``; pixel data is not read (it is
        deferred: read from the file on access); each header's ``filename`` attribute is its path. Treat the
        headers as read-only: a later scan may return the same objects.

    Raises:
        DicomSeriesError: the folder does not exist, or a file is truncated/corrupt.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomSeriesError(f"{folder}: not a folder; pass the folder that holds the DICOM series files.")
    listing = []
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        try:
            info = path.stat()
        except OSError:  # a dangling link
            continue
        if stat.S_ISREG(info.st_mode):
            listing.append((path, info))
    identity = tuple((str(p), i.st_dev, i.st_ino, i.st_size, i.st_mtime_ns) for p, i in listing)
    key = (str(folder.absolute()), recursive)
    with _SCANS_LOCK:
        memo = _SCANS.get(key)
        if memo is not None and memo[0] == identity:
            _SCANS.move_to_end(key)
            return {uid: list(headers) for uid, headers in memo[1].items()}
    series = _scan([p for p, _ in listing])
    _remember(key, identity, series)
    return {uid: list(headers) for uid, headers in series.items()}


def _remember(key: tuple[str, bool], identity: tuple, series: dict[str, list[Any]]) -> None:
    """Keep a scan's headers, dropping the oldest scans beyond ``_SCAN_MEMO_HEADERS`` headers."""
    with _SCANS_LOCK:
        _SCANS.pop(key, None)
        if sum(map(len, series.values())) <= _SCAN_MEMO_HEADERS:
            _SCANS[key] = (identity, series)
        while sum(len(h) for _, scan in _SCANS.values() for h in scan.values()) > _SCAN_MEMO_HEADERS:
            _SCANS.popitem(last=False)


def _scan(files: Sequence[Path]) -> dict[str, list[Any]]:
    """Parse the headers of ``files`` and group the image objects by SeriesInstanceUID."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, list[Any]] = {}
    for path in files:
        if path.name.startswith(".") or path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = pydicom.dcmread(path, defer_size=1024)  # pixel data stays on disk until the volume is read
        except InvalidDicomError as exc:
            if _has_dicom_magic(path):
                raise DicomSeriesError(f"{path}: truncated or corrupt DICOM file ({exc}); re-export it or move it out of the folder.") from exc
            logger.debug("skipping non-DICOM file %s", path)
            continue
        except Exception as exc:  # truncated or corrupt: pydicom raises EOFError, struct/OSError, ValueError...
            raise DicomSeriesError(
                f"{path}: unreadable DICOM file ({type(exc).__name__}: {exc}). It is truncated or corrupt; "
                "re-export it or move it out of the folder."
            ) from exc
        if ds.file_meta.get("MediaStorageSOPClassUID", "") == _DICOMDIR_SOP_CLASS:
            continue
        _check_complete(ds, path)
        if is_multiframe(ds) and "SeriesInstanceUID" in ds:  # kept, so that selecting it says why it is refused
            series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
            continue
        if not all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient", "Rows", "SeriesInstanceUID")):
            logger.debug("skipping non-image DICOM object %s (%s)", path, ds.get("SOPClassUID", "no SOP class"))
            continue
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return series


def is_multiframe(ds: Any) -> bool:
    """Whether a header is a multi-frame image (enhanced MR/CT: many frames, geometry in functional groups)."""
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        return False
    return int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds


def _has_dicom_magic(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def _check_complete(ds: Any, path: Path) -> None:
    """Raise when the file ends inside its last element: pydicom reads truncated files silently."""
    size = path.stat().st_size
    truncated = False
    tags = list(ds.keys())
    if tags:
        last = ds.get_item(tags[-1], keep_deferred=True)
        tell, length = getattr(last, "value_tell", None), getattr(last, "length", 0)
        truncated = tell is not None and length != 0xFFFFFFFF and tell + length > size
    if "Rows" in ds and "ImagePositionPatient" in ds and "PixelData" not in ds:
        truncated = True
    if "SOPClassUID" not in ds and "MediaStorageSOPClassUID" not in ds.get("file_meta", {}) and _has_dicom_magic(path):
        truncated = True
    if truncated:
        raise DicomSeriesError(
            f"{path}: truncated DICOM file ({size} bytes; it ends inside an element or lacks PixelData); "
            "re-export it or move it out of the folder."
        )


def _describe(uid: str, headers: Sequence[Any]) -> str:
    h = headers[0]
    image_type = "\\".join(h.get("ImageType", []) or [])
    return (
        f"{uid} ({h.get('Modality', '?')}, description '{h.get('SeriesDescription', '')}', "
        f"image type '{image_type}', {len(headers)} files)"
    )


# ----------------------------------------------------------------------------------------------- selection
#: Without rules, every series but localizers is a candidate (single-slice series are dropped too).
_DEFAULT_RULES = parse_rules({"ImageType": ["!LOCALIZER"]})


def select_series(
    series: Mapping[str, Sequence[Any]], rules: Any = None, series_uid: str | None = None, folder: str | Path = "",
) -> str:
    """Choose one series from :func:`find_series` output.

    Args:
        series: ``{uid: headers}``.
        rules: selection rules (:func:`drdd_med.io.dicom_rules.parse_rules`: ``{"selections": [...]}``, a bare
            ``{keyword: condition}`` mapping, or parsed selections); the first selection that matches exactly one
            series wins, a series matching when all its headers do. Without rules, localizers and single-file
            series are excluded and exactly one series must remain.
        series_uid: pick this SeriesInstanceUID directly.
        folder: only used in error messages.

    Returns:
        The selected SeriesInstanceUID.

    Raises:
        DicomSeriesError: malformed rules, no series or several series match.
    """
    listing = "; ".join(_describe(uid, h) for uid, h in series.items()) or "none"
    if not series:
        raise DicomSeriesError(f"{folder}: no DICOM image series found (non-image objects and other files are skipped).")
    if series_uid is not None:
        if series_uid not in series:
            raise DicomSeriesError(f"{folder}: series {series_uid} not found; series present: {listing}.")
        return series_uid
    try:
        selections = _DEFAULT_RULES if rules is None else parse_rules(rules)
    except ValueError as exc:
        raise DicomSeriesError(f"{folder}: invalid selection rules: {exc}.") from exc
    for selection in selections:
        chosen = [uid for uid, h in series.items() if first_match([selection], h)[1]]
        if rules is None:  # a single classic slice is not a volume; a multi-frame file is refused by sort_series,
            chosen = [uid for uid in chosen if len(series[uid]) > 1 or is_multiframe(series[uid][0])]
            classic = [uid for uid in chosen if not is_multiframe(series[uid][0])]
            chosen = classic or chosen  # so it is chosen only when nothing else is there (and then says why)
        if len(chosen) == 1:
            return chosen[0]
        if len(chosen) > 1:
            which = "" if rules is None else f" selection {selection.name!r}"
            raise DicomSeriesError(
                f"{folder}: {len(chosen)} series match{which}: "
                + "; ".join(_describe(uid, series[uid]) for uid in chosen)
                + ". Narrow the selection rules (Modality, SeriesDescription regex, ImageType) or pass series_uid."
            )
    if rules is None:
        raise DicomSeriesError(f"{folder}: no image series to read (localizers and single-slice series are skipped); "
                               f"series present: {listing}.")
    raise DicomSeriesError(f"{folder}: no series matches the selection rules {rules}; series present: {listing}.")


# ----------------------------------------------------------------------------------------------- geometry
def sort_series(headers: Sequence[Any], name: str = "series") -> list[Any]:
    """Validate one series and sort its slices by position along the slice normal.

    Args:
        headers: the series' datasets (headers are enough).
        name: how to name the series in error messages (folder or UID).

    Returns:
        The datasets sorted by ``IPP . n`` ascending, n = row cosine x column cosine.

    Raises:
        DicomSeriesError: localizer, multi-frame, mixed orientation or pixel grid, fewer than 2 slices, duplicate
            positions, gantry tilt, or non-uniform spacing (a missing slice).
    """
    first = headers[0]
    if any(str(v).upper() == "LOCALIZER" for v in first.get("ImageType", []) or []):
        raise DicomSeriesError(f"{name}: is a LOCALIZER series; select the diagnostic series instead.")
    for ds in headers:
        if is_multiframe(ds):
            kind = getattr(ds.get("SOPClassUID"), "name", "") or str(ds.get("SOPClassUID", "multi-frame image"))
            raise DicomSeriesError(
                f"{ds.filename}: multi-frame image ({kind}, {int(ds.get('NumberOfFrames', 1) or 1)} frames in one "
                "file) is not supported; export the series as classic single-frame images (one file per slice) "
                "from the scanner or PACS."
            )
    if len(headers) < 2:
        raise DicomSeriesError(f"{name}: has {len(headers)} slice; a volume needs at least 2.")
    iop0 = np.asarray(first.ImageOrientationPatient, dtype=float)
    grid0 = (int(first.Rows), int(first.Columns), tuple(float(v) for v in first.PixelSpacing))
    for ds in headers[1:]:
        if np.abs(np.asarray(ds.ImageOrientationPatient, dtype=float) - iop0).max() > _IOP_TOL:
            raise DicomSeriesError(
                f"{name}: mixed orientation: {ds.filename} has ImageOrientationPatient "
                f"{list(ds.ImageOrientationPatient)} but {first.filename} has {list(iop0)}; one series must have one orientation."
            )
        grid = (int(ds.Rows), int(ds.Columns), tuple(float(v) for v in ds.PixelSpacing))
        if grid != grid0:
            raise DicomSeriesError(f"{name}: {ds.filename} has rows/columns/spacing {grid}, {first.filename} has {grid0}.")
    normal = np.cross(iop0[:3], iop0[3:])
    dist = np.array([np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), normal) for ds in headers])
    order = np.argsort(dist, kind="stable")
    ordered = [headers[i] for i in order]
    steps = np.diff(dist[order])
    if np.any(steps < 1e-3):
        k = int(np.argmin(steps))
        a, b = ordered[k], ordered[k + 1]
        same = str(a.get("SOPInstanceUID", "")) == str(b.get("SOPInstanceUID", "")) and "SOPInstanceUID" in a
        why = ("the same image (SOPInstanceUID) is in the folder twice; remove one copy" if same else
               "two images at one position: a repeated acquisition or another series with the same UID; keep one")
        raise DicomSeriesError(f"{name}: duplicate slice position {dist[order][k]:.3f} mm in {a.filename} and "
                               f"{b.filename}: {why}.")
    step = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - step) > max(_SPACING_ABS_TOL_MM, _SPACING_REL_TOL * step))
    if bad.size:
        k = int(bad[0])
        kind = "a gap" if steps[k] > step else "a short step"
        raise DicomSeriesError(
            f"{name}: non-uniform slice spacing: {kind} of {steps[k]:.3f} mm at position {dist[order][k]:.3f} mm "
            f"between files {ordered[k].filename} and {ordered[k + 1].filename}, {step:.3f} mm elsewhere; a slice is "
            "missing or the series mixes acquisitions."
        )
    s = (np.asarray(ordered[-1].ImagePositionPatient, float) - np.asarray(ordered[0].ImagePositionPatient, float)) / (len(ordered) - 1)
    if np.linalg.norm(s - np.dot(s, normal) * normal) > 0.01 * np.linalg.norm(s):
        raise DicomSeriesError(f"{name}: slices are not stacked along the slice normal (gantry tilt); resample the series first.")
    return ordered


def series_affine(ordered: Sequence[Any]) -> np.ndarray:
    """RAS affine of a sorted series, for array index order (i = column, j = row, k = slice).

    Args:
        ordered: datasets sorted by :func:`sort_series`.

    Returns:
        (4, 4) float64 voxel-to-RAS affine in mm.
    """
    iop = np.asarray(ordered[0].ImageOrientationPatient, dtype=float)
    row_spacing, col_spacing = (float(v) for v in ordered[0].PixelSpacing)
    ipp0 = np.asarray(ordered[0].ImagePositionPatient, dtype=float)
    step = (np.asarray(ordered[-1].ImagePositionPatient, dtype=float) - ipp0) / (len(ordered) - 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = iop[:3] * col_spacing, iop[3:] * row_spacing, step, ipp0
    return _LPS_TO_RAS @ lps


def _check_decodable(ordered: Sequence[Any]) -> None:
    """Refuse compressed pixel data that no installed pydicom decoder plugin can decode, naming the syntax."""
    from pydicom.pixels import get_decoder

    seen: set[str] = set()
    for header in ordered:
        syntax = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is None or str(syntax) in seen:
            continue
        seen.add(str(syntax))
        if not syntax.is_compressed:
            continue
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise DicomSeriesError(f"{header.filename}: pixel data uses transfer syntax {syntax.name} ({syntax}), "
                                   "which pydicom cannot decode; export the series uncompressed.") from None
        if not decoder.is_available:
            needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
            raise DicomSeriesError(
                f"{header.filename}: pixel data is compressed as {syntax.name} ({syntax}) and no decoder for it is "
                f"installed (any one of: {needs}); install one or export the series uncompressed."
            )


def _read_pixels(ordered: Sequence[Any]) -> np.ndarray:
    """Decode the sorted slices (modality LUT applied) into an (X, Y, Z) float32 volume, one file at a time."""
    from pydicom.pixels import apply_modality_lut, pixel_array

    volume = None
    for k, header in enumerate(ordered):
        try:  # from the file: the header keeps its pixel data deferred, so no copy of it stays in memory
            pixels = apply_modality_lut(pixel_array(header.filename), header)
        except Exception as exc:
            raise DicomSeriesError(
                f"{header.filename}: cannot decode pixel data ({type(exc).__name__}: {exc}); the file is truncated, "
                "corrupt or uses a transfer syntax without an installed decoder (pylibjpeg / gdcm)."
            ) from exc
        if pixels.ndim != 2:
            raise DicomSeriesError(f"{header.filename}: expected one greyscale frame, got pixel array {pixels.shape}.")
        if volume is None:
            volume = np.empty((pixels.shape[1], pixels.shape[0], len(ordered)), dtype=np.float32)
        volume[:, :, k] = pixels.T
    return volume


def check_series(headers: Sequence[Any], name: str) -> list[Any]:
    """Validate one series from its headers alone and sort it (:func:`sort_series`).

    Besides the geometry, the pixel data must be decodable by an installed decoder and the volume small enough to
    translate on this machine (:func:`drdd_med.io.input_checks.check_size`); no pixel data is read.

    Args:
        headers: the series' headers (from :func:`find_series`).
        name: how to name the series in error messages.

    Returns:
        The headers sorted along the slice normal.

    Raises:
        DicomSeriesError: see :func:`sort_series`; or no decoder for the transfer syntax.
        ValueError: the volume is too large (:func:`~drdd_med.io.input_checks.check_size`).
    """
    ordered = sort_series(headers, name=name)
    _check_decodable(ordered)
    check_size(name, (int(ordered[0].Columns), int(ordered[0].Rows), len(ordered)))
    return ordered


@dataclass(frozen=True)
class DicomSeries:
    """One series read from a folder by :func:`read_series`.

    Attributes:
        folder: the folder it was read from.
        datasets: headers sorted like the slices (index k of the volume is ``datasets[k]``); pixel data deferred.
        affine: (4, 4) RAS affine in mm for index order (i = column, j = row, k = slice).
        volume: (X, Y, Z) float32 modality-LUT values (HU for CT), or None when read with ``pixels=False``.
    """

    folder: Path
    datasets: list[Any]
    affine: np.ndarray
    volume: np.ndarray | None = None

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def meta(self) -> dict[str, Any]:
        """MONAI meta of the volume (no channel dimension): affines, shape, RAS, folder, series UID, modality."""
        shape = (int(self.datasets[0].Columns), int(self.datasets[0].Rows), len(self.datasets))
        return {
            "affine": self.affine.copy(),
            "original_affine": self.affine.copy(),
            "spatial_shape": np.asarray(shape),
            "space": "RAS",
            "original_channel_dim": "no_channel",
            "filename_or_obj": str(self.folder),
            SOURCE_SERIES_UID_KEY: self.series_uid,
            "modality": str(self.datasets[0].get("Modality", "")),
        }


def read_series(folder: str | Path, rules: Any = None, series_uid: str | None = None,
                pixels: bool = True) -> DicomSeries:
    """Select, validate and (with ``pixels``) decode one series of a folder.

    Args:
        folder: folder of DICOM files (sub-folders included).
        rules: selection rules (see :func:`select_series`); None picks the only non-localizer series.
        series_uid: select by SeriesInstanceUID instead.
        pixels: decode the voxels; ``False`` validates the headers only (:func:`check_series`).

    Raises:
        DicomSeriesError: any selection, geometry or decoding problem, naming the file or folder.
        ValueError: the volume is too large for this machine.
    """
    folder = Path(folder)
    series = find_series(folder)
    uid = select_series(series, rules=rules, series_uid=series_uid, folder=folder)
    ordered = check_series(series[uid], name=f"{folder} series {uid}")
    return DicomSeries(folder, ordered, series_affine(ordered), _read_pixels(ordered) if pixels else None)


def load_series(folder: str | Path, rules: Any = None, series_uid: str | None = None) -> tuple[Any, list[Any]]:
    """Read one series of a folder as a RAS MetaTensor (arguments as for :func:`read_series`).

    Returns:
        ``(image, datasets)``: image is a float32 ``MetaTensor`` (1, X, Y, Z) with modality-LUT values (HU for
        CT), RAS ``affine``, and meta ``source_series_uid`` / ``modality``; datasets are the series' headers sorted
        like the slices (index k of the volume is ``datasets[k]``), their pixel data deferred.

    Raises:
        DicomSeriesError: any selection, geometry or decoding problem, naming the file or folder.

    Example:
        >>> image, datasets = load_series("study/", rules={"Modality": "(?i)MR", "SeriesDescription": "(?i)t1"})
        >>> image.shape, image.affine  # (1, X, Y, Z), RAS mm
    """
    from monai.data import MetaTensor

    series = read_series(folder, rules, series_uid)
    return MetaTensor(series.volume[None], meta={**series.meta, "original_channel_dim": 0}), series.datasets


def load_series_datasets(folder: str | Path, series_uid: str) -> list[Any]:
    """Headers of one series, sorted like the volume's slices (for writing a derived series); reads no pixels.

    After the series was read (:class:`DicomSeriesReader`, :func:`load_series`), this parses no file again
    (see :func:`find_series`).

    Args:
        folder: the folder the series was read from (``image.meta["filename_or_obj"]``).
        series_uid: ``image.meta[SOURCE_SERIES_UID_KEY]``.

    Returns:
        Sorted list of pydicom datasets.
    """
    return read_series(folder, series_uid=series_uid, pixels=False).datasets


def _is_folder(path: Any) -> bool:
    return all(Path(str(p)).is_dir() for p in (path if isinstance(path, (list, tuple)) else [path]))


class DicomSeriesReader(ImageReader):
    """MONAI ``ImageReader`` for a folder holding a DICOM series, built on :func:`read_series`.

    Args:
        rules: selection rules passed to :func:`select_series` (parsed here, so malformed rules fail at once).
        series_uid: select a series by UID instead.

    Example:
        >>> from monai.transforms import LoadImaged
        >>> load = LoadImaged("image", reader=DicomSeriesReader(rules={"Modality": "MR"}), ensure_channel_first=True)
        >>> load({"image": "study/mr_folder"})["image"].meta["source_series_uid"]
    """

    def __init__(self, rules: Any = None, series_uid: str | None = None) -> None:
        super().__init__()
        self.rules = None if rules is None else parse_rules(rules)
        self.series_uid = series_uid

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """True when every path is a folder (a series is a folder, not a file)."""
        return _is_folder(filename)

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> DicomSeries:
        """Read the series in one folder (a :class:`DicomSeries`, for :meth:`get_data`)."""
        paths = list(data) if isinstance(data, (list, tuple)) else [data]
        if len(paths) != 1:
            raise DicomSeriesError(f"DicomSeriesReader reads one series folder at a time, got {len(paths)}: {paths}.")
        return read_series(paths[0], self.rules, self.series_uid)

    def get_data(self, img: DicomSeries) -> tuple[np.ndarray, dict]:
        """Return the (X, Y, Z) float32 volume and its meta (RAS affine, series UID, no datasets)."""
        return img.volume, img.meta
