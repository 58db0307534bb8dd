"""Source-domain detection from DICOM headers: pydicom's example MR / CT files, modified copies for the other cases,
and refusals that name the file and what was seen."""

from __future__ import annotations

import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

from drdd_med.io.dicom_series import DicomSeriesError  # noqa: E402
from drdd_med.io.domain import DomainError, detect_domain, domain_of_header  # noqa: E402


def _header(name: str, **changes):
    """A pydicom example header, with attributes set (None deletes one)."""
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data)")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for keyword, value in changes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize("name, expected", [
    ("MR_small.dcm", "t2w"),                       # Toshiba spin echo, TE 240 ms, TR 4000 ms
    ("MR2_UNCR.dcm", "t1w"),                       # Philips spin echo, TE 27 ms, TR 350 ms
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", "t1w"),  # Siemens VIBE gradient echo, TE 2.8 ms, TR 5.5 ms, flip 10
    ("emri_small.dcm", "t1w"),                     # enhanced MR, AcquisitionContrast T1
])
def test_real_mr_headers(name, expected):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data)")
    assert detect_domain(path) == expected


def test_a_fan_beam_ct_is_refused_naming_the_file_and_what_was_seen():
    path = get_testdata_file("CT_small.dcm")
    with pytest.raises(DomainError) as info:
        detect_domain(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: cannot tell the source domain (t1w, t2w, cbct)")
    assert "helical fan-beam CT (ScanOptions 'HELICAL MODE')" in msg
    assert "Modality='CT'" in msg and "ManufacturerModelName='RHAPSODE'" in msg
    with pytest.raises(DomainError, match="without cone-beam markers"):
        domain_of_header(_header("CT_small.dcm", ScanOptions=None))


@pytest.mark.parametrize("changes, reason", [
    ({"Manufacturer": "Varian Medical Systems", "ManufacturerModelName": "On-Board Imager"}, "ManufacturerModelName"),
    ({"SeriesDescription": "CBCT Head 200 deg"}, "SeriesDescription names a cone-beam system ('CBCT')"),
    ({"Manufacturer": "ELEKTA", "ManufacturerModelName": "XVI"}, "'XVI'"),
    ({"Manufacturer": "Planmeca", "ManufacturerModelName": "ProMax 3D"}, "makes cone-beam CT only"),
    ({"Modality": "DX", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.13.1.2"}, "X-Ray 3D Craniofacial"),
])
def test_cone_beam_markers_make_a_ct_header_cbct(changes, reason, caplog):
    import logging

    ds = _header("CT_small.dcm", ScanOptions=None, **changes)
    with caplog.at_level(logging.INFO, logger="drdd_med.io.domain"):
        assert domain_of_header(ds) == "cbct"
    assert reason in caplog.text


def test_cone_beam_name_on_a_helical_ct_is_refused():
    ds = _header("CT_small.dcm", ScanOptions="AXIAL", SeriesDescription="CBCT match", SpiralPitchFactor=0.9)
    with pytest.raises(DomainError, match="SpiralPitchFactor '0.9'"):
        domain_of_header(ds)


@pytest.mark.parametrize("changes, expected", [
    ({"ScanningSequence": None, "SequenceName": "*tse2d1_15"}, "t2w"),                  # Siemens TSE by name
    ({"ScanningSequence": ["GR", "IR"], "InversionTime": 900, "EchoTime": 3, "RepetitionTime": 2300,
      "FlipAngle": 9}, "t1w"),                                                         # MPRAGE
    ({"ScanningSequence": ["SE", "IR"], "InversionTime": 860, "EchoTime": 12,
      "RepetitionTime": 2000}, "t1w"),                                                 # T1-FLAIR
    ({"ScanningSequence": "GR", "EchoTime": 2.5, "RepetitionTime": 250, "FlipAngle": 70}, "t1w"),  # 2D FLASH
    ({"ScanningSequence": "SE", "EchoTime": 15, "RepetitionTime": 600}, "t1w"),
    ({"AcquisitionContrast": "T2", "EchoTime": 10, "RepetitionTime": 500}, "t2w"),      # the declaration wins
])
def test_mr_rules_on_modified_headers(changes, expected):
    assert domain_of_header(_header("MR_small.dcm", **changes)) == expected


@pytest.mark.parametrize("changes, reason", [
    ({"ScanningSequence": ["SE", "IR"], "InversionTime": 2500, "EchoTime": 120, "RepetitionTime": 9000},
     "fluid-attenuated"),
    ({"ScanningSequence": ["SE", "IR"], "InversionTime": 150, "EchoTime": 70, "RepetitionTime": 5000}, "STIR"),
    ({"EchoTime": 15, "RepetitionTime": 3000}, "proton density"),
    ({"ScanningSequence": ["SE", "EP"]}, "echo-planar"),
    ({"ScanningSequence": "GR", "EchoTime": 20, "RepetitionTime": 600, "FlipAngle": 20}, "not T1-weighted"),
    ({"ScanningSequence": "GR", "EchoTime": 3, "RepetitionTime": 10, "FlipAngle": 3}, "flip 3"),
    ({"EchoTime": None}, "EchoTime or RepetitionTime missing"),
    ({"ScanningSequence": None}, "sequence type is unknown"),
    ({"AcquisitionContrast": "PROTON_DENSITY"}, "AcquisitionContrast PROTON_DENSITY is neither T1 nor T2"),
    ({"Modality": "US"}, "Modality US is not the modality of a source domain"),
])
def test_mr_headers_that_do_not_settle_the_domain_are_refused(changes, reason):
    with pytest.raises(DomainError, match=reason) as info:
        domain_of_header(_header("MR_small.dcm", **changes), where="case7/im1.dcm")
    assert str(info.value).startswith("case7/im1.dcm: cannot tell the source domain")
    assert "Seen: Modality=" in str(info.value) and "Name the domain explicitly" in str(info.value)


def test_files_folders_and_unreadable_inputs(tmp_path):
    folder = tmp_path / "cbct_series"
    folder.mkdir()
    for k in range(2):  # a two-slice CBCT series
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        del ds.ScanOptions
        ds.ManufacturerModelName = "On-Board Imager"
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{k}"
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], float(k) * 5.0]
        ds.save_as(folder / f"im{k}.dcm")
    assert detect_domain(folder) == "cbct"
    assert detect_domain(folder / "im0.dcm") == "cbct"
    (tmp_path / "notes.dcm").write_text("not DICOM")
    with pytest.raises(DomainError, match=r"notes.dcm: not a readable DICOM file"):
        detect_domain(tmp_path / "notes.dcm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicomSeriesError, match="no DICOM image series"):
        detect_domain(tmp_path / "empty")
