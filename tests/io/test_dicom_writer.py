"""Tests for drdd_med.io.dicom_writer: geometry, references, validators and read-back round trips."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from drdd_med.io.dicom_series import load_series
from drdd_med.io.dicom_writer import slice_geometry, write_sct_series

SimpleITK = pytest.importorskip("SimpleITK")

FIXED_TIME = dt.datetime(2024, 5, 6, 7, 8, 9)
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_SQ = np.sqrt(0.5)
GEOMETRIES = {
    # name: (IOP, (row spacing, column spacing), slice spacing, (X columns, Y rows, Z slices))
    "axial": ([1, 0, 0, 0, 1, 0], (0.9, 0.9), 2.0, (12, 10, 5)),
    "sagittal": ([0, 1, 0, 0, 0, -1], (1.0, 1.0), 1.5, (10, 12, 4)),
    "oblique": ([_SQ, _SQ, 0, 0, 0, -1], (1.2, 1.2), 2.5, (9, 11, 4)),
    "non_square": ([1, 0, 0, 0, 1, 0], (0.7, 1.3), 3.0, (13, 8, 4)),  # row spacing != column spacing
    "anisotropic": ([0, 1, 0, 0, 0, -1], (0.5, 2.0), 4.0, (8, 14, 3)),
}


def make_mr_series(folder: Path, iop, pixel_spacing, slice_spacing, shape, shuffle=True):
    """Write an MR series with pydicom; return (datasets in file order, RAS affine per DICOM_PACS_SLICER §1.1)."""
    folder.mkdir(parents=True, exist_ok=True)
    nx, ny, nz = shape
    r, c = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    n = np.cross(r, c)
    origin = np.array([-30.5, 20.25, -10.0])
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    order = np.random.default_rng(0).permutation(nz) if shuffle else np.arange(nz)
    datasets = []
    for k in range(nz):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "PID-42", "19700101", "F"
        ds.PatientAge = "054Y"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study, "20240101", "101010", "S1"
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyDescription = "ACC7", "Ref^Doc", "Brain MR"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = series, 7, "MR"
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame, ""
        ds.BodyPartExamined, ds.PatientPosition = "HEAD", "HFS"
        ds.ImageOrientationPatient = list(iop)
        ds.ImagePositionPatient = (origin + k * slice_spacing * n).tolist()
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = slice_spacing
        ds.InstanceNumber = int(order[k]) + 1
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.full((ny, nx), k, dtype="<u2").tobytes()
        ds.save_as(folder / f"mr_{k:03d}.dcm", enforce_file_format=True)
        datasets.append(ds)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = r * pixel_spacing[1]
    affine_lps[:3, 1] = c * pixel_spacing[0]
    affine_lps[:3, 2] = slice_spacing * n
    affine_lps[:3, 3] = origin
    return datasets, RAS_FROM_LPS @ affine_lps


def hu_volume(shape, seed=0):
    """Random HU with fractions and out-of-range values, so clipping and rounding are exercised."""
    return np.random.default_rng(seed).uniform(-1500.0, 3500.0, size=shape)


def sitk_read(folder: Path):
    """Read a series with SimpleITK; return (HU (X, Y, Z), RAS affine)."""
    reader = SimpleITK.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    array = SimpleITK.GetArrayFromImage(image).transpose(2, 1, 0)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return array, RAS_FROM_LPS @ affine


@pytest.fixture(scope="module", params=list(GEOMETRIES))
def written(request, tmp_path_factory):
    iop, spacing, slice_spacing, shape = GEOMETRIES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    sources, affine = make_mr_series(root / "mr", iop, spacing, slice_spacing, shape)
    hu = hu_volume(shape)
    files = write_sct_series(hu, affine, root / "sct", sources, model_version="test-1.0", created=FIXED_TIME)
    return {"root": root, "sources": sources, "affine": affine, "hu": hu, "files": files}


def test_sitk_round_trip_hu_and_affine(written):
    hu, affine = sitk_read(written["root"] / "sct")
    expected = np.rint(np.clip(written["hu"], -1024, 3071))
    np.testing.assert_array_equal(hu, expected)
    np.testing.assert_allclose(affine, written["affine"], atol=1e-4)


def test_load_series_round_trip(written):
    image, datasets = load_series(written["root"] / "sct")
    np.testing.assert_array_equal(image[0].numpy(), np.rint(np.clip(written["hu"], -1024, 3071)))
    np.testing.assert_allclose(np.asarray(image.affine), written["affine"], atol=1e-4)
    assert [int(ds.InstanceNumber) for ds in datasets] == list(range(1, len(datasets) + 1))


def test_mr_to_sct_pipeline_through_load_series(tmp_path):
    iop, spacing, slice_spacing, shape = GEOMETRIES["oblique"]
    make_mr_series(tmp_path / "mr", iop, spacing, slice_spacing, shape, shuffle=True)
    mr, sources = load_series(tmp_path / "mr")
    hu = hu_volume(tuple(mr.shape[1:]), seed=3)
    write_sct_series(hu, mr.affine, tmp_path / "sct", sources, model_version="v1")
    sct, written = load_series(tmp_path / "sct")
    np.testing.assert_allclose(np.asarray(sct.affine), np.asarray(mr.affine), atol=1e-4)
    np.testing.assert_array_equal(sct[0].numpy(), np.rint(np.clip(hu, -1024, 3071)))
    # slice k of the sCT references slice k of the MR (both sorted by position by the reader)
    assert [ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in written] == \
        [ds.SOPInstanceUID for ds in sources]


@pytest.mark.dicomtools
def test_dciodvfy_and_dcentvfy_report_no_errors(written):
    for path in written["files"]:
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=30)
        report = result.stdout + result.stderr
        assert not [line for line in report.splitlines() if line.startswith("Error")], report
        assert result.returncode == 0, report
    result = subprocess.run(["dcentvfy", *map(str, written["files"])], capture_output=True, text=True, timeout=30)
    report = result.stdout + result.stderr
    assert "Error" not in report, report


def test_source_image_references_mr_at_same_position(written):
    sources = {ds.SOPInstanceUID: ds for ds in written["sources"]}
    normal = np.cross(*np.reshape(np.asarray(written["sources"][0].ImageOrientationPatient, float), (2, 3)))
    for path in written["files"]:
        ct = pydicom.dcmread(path)
        (item,) = ct.SourceImageSequence
        mr = sources[item.ReferencedSOPInstanceUID]
        assert item.ReferencedSOPClassUID == MRImageStorage
        assert item.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        np.testing.assert_allclose(np.asarray(ct.ImagePositionPatient, float) @ normal,
                                   np.asarray(mr.ImagePositionPatient, float) @ normal, atol=1e-4)
        (series_item,) = ct.ReferencedSeriesSequence
        assert series_item.SeriesInstanceUID == mr.SeriesInstanceUID
        assert series_item.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == mr.SOPInstanceUID


def test_patient_study_and_frame_copied_series_new(written):
    mr = written["sources"][0]
    uids = set()
    for number, path in enumerate(written["files"], start=1):
        ct = pydicom.dcmread(path)
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID",
                   "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                   "FrameOfReferenceUID", "BodyPartExamined", "PatientPosition"):
            assert ct[kw].value == mr[kw].value, kw
        assert ct.SeriesInstanceUID != mr.SeriesInstanceUID and ct.SeriesNumber == mr.SeriesNumber + 1000
        assert ct.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ct.SOPInstanceUID == ct.file_meta.MediaStorageSOPInstanceUID
        assert ct.Modality == "CT" and list(ct.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
        assert "NOT FOR DIAGNOSTIC USE" in ct.SeriesDescription and ct.Manufacturer == "drdd_med"
        assert "model test-1.0" in list(ct.SoftwareVersions)
        assert "KVP" in ct and "AcquisitionNumber" in ct and ct.KVP is None and ct.AcquisitionNumber is None  # Type 2
        assert ct.InstanceNumber == number
        uids.add(ct.SOPInstanceUID)
    assert len(uids) == len(written["files"])


def test_rerun_is_byte_identical_and_version_changes_uids(tmp_path):
    iop, spacing, slice_spacing, shape = GEOMETRIES["non_square"]
    sources, affine = make_mr_series(tmp_path / "mr", iop, spacing, slice_spacing, shape)
    hu = hu_volume(shape, seed=1)
    first = [p.read_bytes() for p in write_sct_series(hu, affine, tmp_path / "a", sources, model_version="v1",
                                                      created=FIXED_TIME)]
    again = write_sct_series(hu, affine, tmp_path / "a", sources, model_version="v1", created=FIXED_TIME)
    assert [p.read_bytes() for p in again] == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "mr"]  # no temp folders left behind
    other = write_sct_series(hu, affine, tmp_path / "b", sources, model_version="v2", created=FIXED_TIME)
    v1 = [pydicom.dcmread(p) for p in again]
    v2 = [pydicom.dcmread(p) for p in other]
    assert v1[0].SeriesInstanceUID != v2[0].SeriesInstanceUID
    assert not {d.SOPInstanceUID for d in v1} & {d.SOPInstanceUID for d in v2}
    assert v1[0].StudyInstanceUID == v2[0].StudyInstanceUID


def test_non_dicom_source_gets_deterministic_placeholder(tmp_path):
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    hu = hu_volume((6, 7, 3))
    a = write_sct_series(hu, affine, tmp_path / "a", model_version="v1", source_uid_seed="case_001.nii.gz",
                         body_part_examined="HEAD")
    b = write_sct_series(hu, affine, tmp_path / "b", model_version="v1", source_uid_seed="case_001.nii.gz",
                         body_part_examined="HEAD")
    c = write_sct_series(hu, affine, tmp_path / "c", model_version="v1", source_uid_seed="case_002.nii.gz",
                         body_part_examined="HEAD")
    da, db, dc = (pydicom.dcmread(x[0]) for x in (a, b, c))
    for kw in ("StudyInstanceUID", "FrameOfReferenceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID"):
        assert da[kw].value == db[kw].value and da[kw].value != dc[kw].value, kw
    assert str(da.PatientName).startswith("ANONYMOUS") and "case_001" not in str(da.PatientID)
    assert "SourceImageSequence" not in da
    hu_back, affine_back = sitk_read(tmp_path / "a")
    np.testing.assert_array_equal(hu_back, np.rint(np.clip(hu, -1024, 3071)))
    np.testing.assert_allclose(affine_back, affine, atol=1e-4)


@pytest.mark.dicomtools
def test_non_dicom_source_passes_dciodvfy(tmp_path):
    files = write_sct_series(hu_volume((6, 7, 2)), np.eye(4), tmp_path / "s", model_version="v1",
                             source_uid_seed="seed", body_part_examined="HEAD")
    result = subprocess.run(["dciodvfy", str(files[0])], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "Error" not in result.stdout + result.stderr, result.stderr


def test_pixel_spacing_is_row_first():
    affine = np.diag([-0.5, -2.0, 3.0, 1.0])  # column spacing (along i) 0.5 mm, row spacing (along j) 2 mm
    geometry = slice_geometry(affine, 2)
    assert geometry["pixel_spacing"] == [2.0, 0.5]
    np.testing.assert_allclose(geometry["orientation"], [1, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(geometry["positions"][1], [0, 0, 3.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hu_volume": np.zeros((4, 4))}, "hu_volume must be"),
        ({"hu_volume": np.full((4, 4, 2), np.nan)}, "NaN"),
        ({"affine_ras": np.eye(3)}, "4x4"),
        ({"affine_ras": np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])}, "orthogonal"),
        ({"source_uid_seed": None}, "source_uid_seed"),
        ({"model_version": "a|b"}, "must not contain"),
        ({"series_description": "x" * 65}, "64"),
    ],
)
def test_bad_input_raises_clear_value_error(tmp_path, kwargs, match):
    args = {"hu_volume": np.zeros((4, 4, 2)), "affine_ras": np.eye(4), "out_dir": tmp_path / "o",
            "model_version": "v1", "source_uid_seed": "seed"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        write_sct_series(**args)


def test_refuses_to_replace_foreign_folder(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a previous sCT series"):
        write_sct_series(np.zeros((4, 4, 2)), np.eye(4), tmp_path / "o", model_version="v1", source_uid_seed="s")
    assert (tmp_path / "o" / "notes.txt").read_text() == "keep me"
