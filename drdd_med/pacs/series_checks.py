"""Checks between the job's steps: a retrieved series is complete and readable; a translation wrote one sCT series.

Both raise ``ValueError`` subclasses whose message is the reason recorded in the journal (UIDs and counts only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drdd_med.io.dicom_series import DicomSeriesError, load_series

__all__ = ["IncompleteSeriesError", "check_retrieved", "check_volume", "check_sct"]


class IncompleteSeriesError(ValueError):
    """A retrieved series is incomplete, inconsistent or unreadable; or a translation output is malformed."""


def check_retrieved(folder: Path, series_uid: str, received: int, result: Any,
                    expected_instances: int | None = None) -> list[Any]:
    """Check that ``folder`` holds every instance of series ``series_uid`` and return their headers.

    Args:
        folder: retrieval folder (one ``<SOPInstanceUID>.dcm`` per accepted instance).
        series_uid: the source SeriesInstanceUID.
        received: instances our C-STORE handler accepted.
        result: the C-MOVE / C-GET :class:`~drdd_med.pacs.scu.RetrieveResult`.
        expected_instances: NumberOfSeriesRelatedInstances from C-FIND, if the PACS gave it.

    Returns:
        The instances' headers (no pixel data), for the selection re-check on full headers.

    Raises:
        IncompleteSeriesError: the counts disagree, or a header cannot be read.
    """
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

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
        return [dcmread(f, stop_before_pixels=True) for f in files]
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise IncompleteSeriesError(f"series {series_uid}: unreadable instance ({exc})") from exc


def check_volume(folder: Path, series_uid: str) -> None:
    """Check that the retrieved series reads as one regular volume (the reader the translator uses).

    Raises:
        IncompleteSeriesError: gaps, duplicates, mixed geometry or a file that cannot be decoded (the reader's
            message is kept).
    """
    files = list(Path(folder).glob("*.dcm"))
    try:
        _, datasets = load_series(folder, series_uid=series_uid)
    except DicomSeriesError as exc:
        raise IncompleteSeriesError(f"series {series_uid}: not a complete, consistent series: {exc}") from exc
    if len(datasets) != len(files):
        raise IncompleteSeriesError(f"series {series_uid}: {len(files)} files but {len(datasets)} usable slices")


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
