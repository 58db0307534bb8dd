from __future__ import annotations

import pytest

from drdd_med.pacs.series_checks import IncompleteSeriesError, check_retrieved, check_sct, check_volume
from drdd_med.pacs.scu import RetrieveResult


def _write(datasets, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for ds in datasets:
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    return sorted(folder.glob("*.dcm"))


def _ok(n):
    return RetrieveResult(completed=n, failed=0, warning=0, elapsed_s=0.1)


def test_complete_series_passes_and_returns_headers(tmp_path, mr_series):
    series = mr_series(num_slices=4)
    uid = str(series[0].SeriesInstanceUID)
    _write(series, tmp_path / "s")
    headers = check_retrieved(tmp_path / "s", uid, 4, _ok(4), expected_instances=4)
    assert sorted(h.SOPInstanceUID for h in headers) == sorted(ds.SOPInstanceUID for ds in series)
    ordered = check_volume(headers, uid)
    assert [h.SOPInstanceUID for h in ordered] == [ds.SOPInstanceUID for ds in series]  # by position


def test_the_translator_reads_the_checked_series_without_parsing_a_header_again(tmp_path, mr_series, monkeypatch):
    import pydicom

    from drdd_med.io.dicom_series import load_series

    series = mr_series(num_slices=4)
    uid = str(series[0].SeriesInstanceUID)
    _write(series, tmp_path / "source")
    check_volume(check_retrieved(tmp_path / "source", uid, 4, _ok(4)), uid)
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: pytest.fail(f"header parsed again: {a[0]}"))
    image, datasets = load_series(tmp_path / "source")  # what a translator does next
    assert image.shape == (1, 8, 8, 4) and [d.SOPInstanceUID for d in datasets] == [d.SOPInstanceUID for d in series]


def test_a_file_that_is_not_an_image_of_the_series_is_an_incomplete_retrieval(tmp_path, mr_series):
    series = mr_series(num_slices=3)
    del series[1].ImagePositionPatient  # not an image object: the series reader would skip it
    _write(series, tmp_path / "s")
    with pytest.raises(IncompleteSeriesError, match="3 files but 2 images of the series"):
        check_retrieved(tmp_path / "s", str(series[0].SeriesInstanceUID), 3, _ok(3))


@pytest.mark.parametrize("received, result, expected, message", [
    (3, _ok(4), None, "PACS reported 4 instances delivered, 3 arrived"),
    (4, _ok(4), 5, "C-FIND announced 5 instances, 4 retrieved"),
])
def test_count_mismatches_are_reported(tmp_path, mr_series, received, result, expected, message):
    series = mr_series(num_slices=4)
    files = _write(series, tmp_path / "s")
    if received == 3:
        files[0].unlink()
    with pytest.raises(IncompleteSeriesError, match=message):
        check_retrieved(tmp_path / "s", str(series[0].SeriesInstanceUID), received, result, expected)


def test_empty_retrieval_is_an_error(tmp_path):
    (tmp_path / "s").mkdir()
    with pytest.raises(IncompleteSeriesError, match="no instance received"):
        check_retrieved(tmp_path / "s", "1.2", 0, _ok(0))


def test_missing_slice_is_not_a_consistent_series(tmp_path, mr_series):
    series = mr_series(num_slices=5)
    del series[2]
    _write(series, tmp_path / "s")
    uid = str(series[0].SeriesInstanceUID)
    headers = check_retrieved(tmp_path / "s", uid, 4, _ok(4))
    with pytest.raises(IncompleteSeriesError, match="not a complete, consistent series: .*non-uniform slice spacing"):
        check_volume(headers, uid)


def test_check_sct_requires_one_series_in_the_source_study(tmp_path, mr_series):
    sct = mr_series(num_slices=2)
    files = _write(sct, tmp_path / "out")
    study = str(sct[0].StudyInstanceUID)
    assert check_sct(files, tmp_path / "out", study) == str(sct[0].SeriesInstanceUID)
    with pytest.raises(IncompleteSeriesError, match="expected one series in study"):
        check_sct(files, tmp_path / "out", "9.9.9")
    with pytest.raises(IncompleteSeriesError, match="does not match"):
        check_sct(files[:1], tmp_path / "out", study)  # an extra file the translator did not report
    extra = _write(mr_series(num_slices=1), tmp_path / "out")
    with pytest.raises(IncompleteSeriesError, match="expected one series"):
        check_sct(extra, tmp_path / "out", study)
