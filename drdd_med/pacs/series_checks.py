"""Checks between the job's steps: a retrieved series is complete and consistent; a translation wrote one sCT series.

Both raise ``ValueError`` subclasses whose message is the reason recorded in the journal (UIDs and counts only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drdd_med.io.dicom_series import DicomSeriesError, check_series, find_series

__all__ = ["IncompleteSeriesError", "check_retrieved", "check_volume", "check_sct"]


class IncompleteSeriesError(ValueError):
    """A retrieved series is incomplete, inconsistent or unreadable; or a translation output is malformed."""


def check_retrieved(folder: Path, series_uid: str, received: int, result: Any,
                    expected_instances: int | None = None) -> list[Any]:
    """Check that ``folder`` holds every instance of series ``series_uid`` and return their headers.

    The headers are read here once (:func:`~drdd_med.io.dicom_series.find_series`, pixel data left on disk): the
    job re-checks the selection rules and the geometry on them, and the translator's reader finds them again
    without parsing the files.

    Args:
        folder: retrieval folder (one ``<SOPInstanceUID>.dcm`` per accepted instance).
        series_uid: the source SeriesInstanceUID.
        received: instances our C-STORE handler accepted.
        result: the C-MOVE / C-GET :class:`~drdd_med.pacs.scu.RetrieveResult`.
        expected_instances: NumberOfSeriesRelatedInstances from C-FIND, if the PACS gave it.

    Returns:
        The instances' headers, in file-name order.

    Raises:
        IncompleteSeriesError: the counts disagree, or an instance cannot be read as an image of the series.
    """
    files = sorted(Path(folder).glob("*.dcm"))
    delivered = result.completed + result.warning
    if not files:
        raise IncompleteSeriesError(f"series {series_uid}: no instance received ({delivered} reported delivered)")
    if len(files) != received or len(files) != delivered:
        raise IncompleteSeriesError(f"series {series_uid}: incomplete retrieval, PACS reported {delivered} "
                                    f"instances delivered, {len(files)} arrived")
    if expected_instances is not None and len(files) != expected_instances:
        raise IncompleteSeriesError(f"series {series_uid}: incomplete, C-FIND announced {expected_instances} "
                                    f"instances, {len(files)} retrieved")
    try:
        headers = find_series(folder).get(series_uid, [])
    except DicomSeriesError as exc:
        raise IncompleteSeriesError(f"series {series_uid}: unreadable instance ({exc})") from exc
    if len(headers) != len(files):
        raise IncompleteSeriesError(f"series {series_uid}: {len(files)} files but {len(headers)} images of the series")
    return headers


def check_volume(headers: Sequence[Any], series_uid: str) -> list[Any]:
    """Check on the headers that the series reads as one regular volume (the checks of the translator's reader).

    Returns:
        The headers sorted along the slice normal.

    Raises:
        IncompleteSeriesError: gaps, duplicates, mixed geometry, no decoder for the pixel data, or too large (the
            reader's message is kept).
    """
    try:
        return check_series(headers, name=str(Path(headers[0].filename).parent))
    except ValueError as exc:
        raise IncompleteSeriesError(f"series {series_uid}: not a complete, consistent series: {exc}") from exc


def check_sct(written: Sequence[Path], out_dir: Path, study_uid: str) -> str:
    """Check a translator's output: the files it returned are exactly ``out_dir``'s, one series, same study.

    Returns:
        The sCT SeriesInstanceUID.

    Raises:
        IncompleteSeriesError: nothing written, files outside ``out_dir`` or missing, several series, or another
            study than the source.
    """
    from pydicom import dcmread

    out_dir = Path(out_dir)
    written = [Path(p) for p in written]
    on_disk = {p.name for p in out_dir.glob("*.dcm")} if out_dir.is_dir() else set()
    if not written or {p.name for p in written} != on_disk or any(p.parent != out_dir for p in written):
        raise IncompleteSeriesError(f"translator output in {out_dir} does not match the {len(written)} files it "
                                    "returned; it must write the sCT series (only .dcm files) into out_dir")
    headers = [dcmread(p, stop_before_pixels=True) for p in written]
    series = {str(h.SeriesInstanceUID) for h in headers}
    studies = {str(h.StudyInstanceUID) for h in headers}
    if len(series) != 1 or studies != {study_uid}:
        raise IncompleteSeriesError(f"translator output in {out_dir} holds series {sorted(series)} of studies "
                                    f"{sorted(studies)}; expected one series in study {study_uid}")
    return series.pop()
