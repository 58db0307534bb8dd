"""DICOM series reader: agreement with SimpleITK/GDCM on generated and real series, and rejection of each trap."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from drdd_med.io.dicom_series import (
    SOURCE_SERIES_UID_KEY,
    DicomSeriesError,
    DicomSeriesReader,
    find_series,
    load_series,
    load_series_datasets,
)
from drdd_med.io.dicom_rules import matches_rules

sitk = pytest.importorskip("SimpleITK")

TEST_FILES = Path(get_testdata_file("CT_small.dcm", download=False)).parent
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
c, s = np.cos(0.3), np.sin(0.3)
OBLIQUE = (1.0, 0.0, 0.0, 0.0, float(c), float(s))


def write_series(folder: Path, volume: np.ndarray, iop=AXIAL, origin=(-20.0, 15.0, 30.0), pixel_spacing=(0.8, 0.6),
                 step_mm=2.5, modality="CT", image_type=("ORIGINAL", "PRIMARY", "AXIAL"), instance_numbers=None,
                 series_uid=None, description="test series", prefix="im") -> list[Path]:
    """Write volume (X=columns, Y=rows, Z=slices) as a single-frame series; returns files in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid, for_uid = generate_uid(), generate_uid()
    iop_a = np.asarray(iop, dtype=float)
    normal = np.cross(iop_a[:3], iop_a[3:])
    n_slices = volume.shape[2]
    instance_numbers = instance_numbers if instance_numbers is not None else list(range(1, n_slices + 1))
    sop_class = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    files = []
    for k in range(n_slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
        ds.Modality, ds.SeriesDescription, ds.ImageType = modality, description, list(image_type)
        ds.InstanceNumber = instance_numbers[k]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in np.asarray(origin) + k * step_mm * normal]
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = step_mm
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = (1, -1024) if modality == "CT" else (1, 0)
        stored = volume[:, :, k].T - (-1024 if modality == "CT" else 0)
        ds.PixelData = np.ascontiguousarray(stored.astype(np.int16)).tobytes()
        path = folder / f"{prefix}{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def sitk_volume(folder: Path, series_uid: str) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK (GDCM) reading: (X, Y, Z) voxels and the RAS affine."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series_uid))
    image = reader.Execute()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _volume(shape=(12, 10, 6), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 2000, size=shape).astype(np.float32)


@pytest.mark.parametrize("iop", [AXIAL, SAGITTAL, OBLIQUE], ids=["axial", "sagittal", "oblique"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled_instance_numbers"])
def test_reader_agrees_with_simpleitk(tmp_path, iop, shuffle):
    volume = _volume()
    numbers = list(np.random.default_rng(1).permutation(6) + 1) if shuffle else None
    files = write_series(tmp_path, volume, iop=iop, instance_numbers=numbers)
    if shuffle:  # file names follow InstanceNumber, not position
        for f, n in zip(files, numbers):
            f.rename(f.with_name(f"x{n:03d}.dcm"))
    image, datasets = load_series(tmp_path)
    ref_voxels, ref_affine = sitk_volume(tmp_path, str(datasets[0].SeriesInstanceUID))
    assert image.shape == (1, 12, 10, 6)
    np.testing.assert_array_equal(image[0].numpy(), ref_voxels)
    np.testing.assert_allclose(image.affine.numpy(), ref_affine, atol=1e-4)
    np.testing.assert_array_equal(image[0].numpy(), volume)  # the volume we wrote, not a permutation of it
    assert image.meta[SOURCE_SERIES_UID_KEY] == datasets[0].SeriesInstanceUID
    positions = [np.dot(np.asarray(d.ImagePositionPatient, float), np.cross(iop[:3], iop[3:])) for d in datasets]
    assert positions == sorted(positions)


def test_loadimaged_with_reader_matches_load_series_and_inverts(tmp_path):
    from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd

    volume = _volume()
    write_series(tmp_path, volume, iop=SAGITTAL)
    pre = Compose([LoadImaged("image", reader=DicomSeriesReader()), EnsureChannelFirstd("image"),
                   Orientationd("image", axcodes="RAS", labels=None)])
    data = pre({"image": str(tmp_path)})
    image, _ = load_series(tmp_path)
    assert "dicom_datasets" not in data["image"].meta and SOURCE_SERIES_UID_KEY in data["image"].meta
    # reoriented to RAS: the affine's rotation part is diagonal with positive entries
    rot = data["image"].affine.numpy()[:3, :3]
    assert np.all(np.diag(rot) > 0) and np.allclose(rot - np.diag(np.diag(rot)), 0, atol=1e-6)
    data["pred"] = data["image"].clone()
    back = Invertd("pred", transform=pre, orig_keys="image")(data)["pred"]
    np.testing.assert_array_equal(back.numpy(), image.numpy())
    np.testing.assert_allclose(back.affine.numpy(), image.affine.numpy(), atol=1e-6)


@pytest.fixture
def parses(monkeypatch):
    """Counts of header parses (``pydicom.dcmread``) and pixel decodes (``pydicom.pixels.pixel_array``)."""
    import pydicom.pixels

    counts = {"dcmread": 0, "pixel_array": 0}
    for module, name in ((pydicom, "dcmread"), (pydicom.pixels, "pixel_array")):
        def counted(*args, _real=getattr(module, name), _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, name, counted)
    return counts


def test_headers_are_parsed_once_and_pixels_decoded_once(tmp_path, parses):
    from monai.transforms import LoadImaged

    volume = _volume()
    write_series(tmp_path, volume)
    image = LoadImaged("image", reader=DicomSeriesReader(), image_only=True)({"image": str(tmp_path)})["image"]
    assert parses == {"dcmread": 6, "pixel_array": 6}
    datasets = load_series_datasets(tmp_path, image.meta[SOURCE_SERIES_UID_KEY])  # the predictor's second look
    assert parses == {"dcmread": 6, "pixel_array": 6}
    assert [float(d.ImagePositionPatient[2]) for d in datasets] == sorted(float(d.ImagePositionPatient[2])
                                                                          for d in datasets)
    np.testing.assert_array_equal(image.numpy(), volume)


def test_a_file_changed_after_a_read_is_parsed_again(tmp_path, parses):
    files = write_series(tmp_path, _volume())
    load_series(tmp_path)
    ds = pydicom.dcmread(files[2])
    ds.SeriesDescription = "a longer description than before"
    ds.save_as(files[2])
    parses["dcmread"] = 0
    _, datasets = load_series(tmp_path)
    assert parses["dcmread"] == 6 and datasets[2].SeriesDescription == "a longer description than before"


def test_localizer_in_same_folder_is_ignored_by_default(tmp_path):
    volume = _volume()
    write_series(tmp_path, volume)
    write_series(tmp_path, _volume((12, 10, 2), seed=3), iop=SAGITTAL, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                 prefix="loc")
    assert len(find_series(tmp_path)) == 2
    image, datasets = load_series(tmp_path)
    np.testing.assert_array_equal(image[0].numpy(), volume)
    localizer_uid = next(uid for uid in find_series(tmp_path) if uid != datasets[0].SeriesInstanceUID)
    with pytest.raises(DicomSeriesError, match="LOCALIZER"):
        load_series(tmp_path, series_uid=localizer_uid)


def test_selection_rules_pick_by_modality_and_description(tmp_path):
    ct, mr = _volume(seed=1), _volume(seed=2)
    write_series(tmp_path, ct, modality="CT", description="head CT", prefix="ct")
    write_series(tmp_path, mr, modality="MR", description="T1 MPRAGE", prefix="mr")
    with pytest.raises(DicomSeriesError, match="2 series match"):
        load_series(tmp_path)
    image, _ = load_series(tmp_path, rules={"Modality": "(?i)mr", "SeriesDescription": "(?i)t1"})
    np.testing.assert_array_equal(image[0].numpy(), mr)
    image, _ = load_series(tmp_path, rules={"selections": [{"conditions": {"Modality": "PT"}},
                                                           {"conditions": {"Modality": "CT", "ImageType": ["!DERIVED"]}}]})
    np.testing.assert_array_equal(image[0].numpy(), ct)
    with pytest.raises(DicomSeriesError, match="no series matches"):
        load_series(tmp_path, rules={"Modality": "PT"})


def test_matches_rules_semantics():
    ds = Dataset()
    ds.Modality, ds.ImageType, ds.SliceThickness = "MR", ["ORIGINAL", "PRIMARY"], 1.5
    ds.ImageOrientationPatient = list(SAGITTAL)
    assert matches_rules(ds, {"Modality": "(?i)mr", "ImageType": ["ORIGINAL", "!LOCALIZER"], "SliceThickness": [1, 2]})
    assert matches_rules(ds, {"ImageOrientationPatient": "Sagittal", "SliceThickness": [1.5, ">"]})
    assert not matches_rules(ds, {"ImageOrientationPatient": "Axial"})
    assert not matches_rules(ds, {"ImageType": ["!PRIMARY"]})
    assert not matches_rules(ds, {"SeriesDescription": "t1"})


def test_reader_rejects_missing_slice(tmp_path):
    files = write_series(tmp_path, _volume())
    files[3].unlink()
    with pytest.raises(DicomSeriesError, match=r"non-uniform slice spacing: a gap of 5\.000 mm at position 35\.000 mm "
                                               r"between files \S*im002\.dcm and \S*im004\.dcm, 2\.500 mm "
                                               r"elsewhere.*missing"):
        load_series(tmp_path)


def test_monai_loader_reports_the_gap_instead_of_falling_back_to_its_own_dicom_reader(tmp_path):
    """LoadImaged(reader=VolumeReader()) used to swallow the refusal and read the series with MONAI's PydicomReader."""
    from monai.transforms import LoadImaged

    from drdd_med.io.nifti import VolumeReader

    files = write_series(tmp_path, _volume())
    files[3].unlink()
    with pytest.raises(DicomSeriesError, match="a gap of 5.000 mm"):
        LoadImaged("image", reader=VolumeReader(), image_only=True, ensure_channel_first=True)({"image": str(tmp_path)})


def test_duplicate_positions_say_whether_the_same_image_was_copied(tmp_path):
    files = write_series(tmp_path / "copy", _volume())
    shutil.copy(files[2], files[2].with_name("copy_of_im002.dcm"))
    with pytest.raises(DicomSeriesError, match=r"duplicate slice position 35\.000 mm in .*: the same image "
                                               r"\(SOPInstanceUID\) is in the folder twice"):
        load_series(tmp_path / "copy")
    files = write_series(tmp_path / "repeat", _volume())
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(files[2].with_name("repeat.dcm"))
    with pytest.raises(DicomSeriesError, match=r"duplicate slice position 35\.000 mm .*: two images at one position"):
        load_series(tmp_path / "repeat")


def test_gantry_tilt_is_refused(tmp_path):
    files = write_series(tmp_path, _volume())
    for k, f in enumerate(files):  # each slice shifted 0.5 mm along y per 2.5 mm step: an 11 degree tilt
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x:.4f}", f"{y + 0.5 * k:.4f}", f"{z:.4f}"]
        ds.save_as(f)
    with pytest.raises(DicomSeriesError, match=r"not stacked along the slice normal \(gantry tilt\)"):
        load_series(tmp_path)


def test_enhanced_multiframe_mr_is_refused_by_name_and_a_classic_series_beside_it_still_wins(tmp_path):
    enhanced = get_testdata_file("emri_small.dcm", download=False)  # a real Enhanced MR Image Storage file
    (tmp_path / "only").mkdir()
    shutil.copy(enhanced, tmp_path / "only" / "emri.dcm")
    assert len(find_series(tmp_path / "only")) == 1  # kept (it has no top-level ImagePositionPatient)
    with pytest.raises(DicomSeriesError, match=r"emri\.dcm: multi-frame image \(Enhanced MR Image Storage, 10 frames "
                                               r"in one file\) is not supported; export .* classic single-frame"):
        load_series(tmp_path / "only")
    volume = _volume()
    write_series(tmp_path / "both", volume, modality="MR")
    shutil.copy(enhanced, tmp_path / "both" / "emri.dcm")
    image, _ = load_series(tmp_path / "both")
    np.testing.assert_array_equal(image[0].numpy(), volume)


def _series_from_testdata(name: str, folder: Path, n: int = 3) -> Path:
    """n slices of a pydicom single-frame MR test file, 2 mm apart (header edits only: the pixel data stays as
    stored, compressed or not)."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file(name, download=False))
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        ds.ImagePositionPatient = list(np.asarray(ds.ImagePositionPatient, float) + 2.0 * k * normal)
        ds.save_as(folder / f"{k}.dcm")
    return folder


def test_compressed_pixel_data_without_a_decoder_names_the_transfer_syntax(tmp_path):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    folder = _series_from_testdata("MR_small_jpeg_ls_lossless.dcm", tmp_path / "jls")
    with pytest.raises(DicomSeriesError, match=r"0\.dcm: pixel data is compressed as JPEG-LS Lossless Image "
                                               r"Compression \(1\.2\.840\.10008\.1\.2\.4\.80\) and no decoder for "
                                               r"it is installed"):
        load_series(folder)


def test_compressed_pixel_data_with_a_decoder_reads_exactly(tmp_path):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    if not get_decoder(JPEG2000Lossless).is_available:
        pytest.skip("no JPEG 2000 decoder installed here")
    plain, _ = load_series(_series_from_testdata("MR_small.dcm", tmp_path / "plain"))
    j2k, _ = load_series(_series_from_testdata("MR_small_jp2klossless.dcm", tmp_path / "j2k"))
    np.testing.assert_array_equal(j2k.numpy(), plain.numpy())


def test_series_too_large_is_refused_before_its_pixels_are_decoded(tmp_path, monkeypatch):
    from drdd_med.io import dicom_series

    write_series(tmp_path, _volume())  # 12 x 10 x 6 = 720 voxels
    monkeypatch.setenv("DRDD_MED_MAX_VOXELS", "700")
    monkeypatch.setattr(dicom_series, "_read_pixels", lambda *a: pytest.fail("pixels decoded before the size check"))
    with pytest.raises(ValueError, match=r"series .*: 12x10x6 volume \(0 M voxels\) needs about .* more than the "
                                         r"limit"):
        load_series(tmp_path)


def test_reader_rejects_mixed_orientation(tmp_path):
    files = write_series(tmp_path, _volume())
    ds = pydicom.dcmread(files[2])
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in OBLIQUE]
    ds.save_as(files[2])
    with pytest.raises(DicomSeriesError, match=r"mixed orientation: .*im002\.dcm"):
        load_series(tmp_path)


def test_reader_skips_non_image_dicom_and_rejects_folder_without_images(tmp_path):
    rtstruct = get_testdata_file("rtstruct.dcm", download=False)
    assert rtstruct is not None
    volume = _volume()
    write_series(tmp_path / "a", volume)
    shutil.copy(rtstruct, tmp_path / "a" / "rtstruct.dcm")
    (tmp_path / "a" / "README.txt").write_text("not DICOM")
    image, _ = load_series(tmp_path / "a")
    np.testing.assert_array_equal(image[0].numpy(), volume)
    (tmp_path / "b").mkdir()
    shutil.copy(rtstruct, tmp_path / "b" / "rtstruct.dcm")
    with pytest.raises(DicomSeriesError, match=r"b: no DICOM image series"):
        load_series(tmp_path / "b")


@pytest.mark.parametrize("keep_fraction", [0.98, 0.5, 0.02], ids=["truncated_pixels", "truncated_header", "truncated_preamble"])
def test_reader_rejects_truncated_file(tmp_path, keep_fraction):
    files = write_series(tmp_path, _volume())
    data = files[4].read_bytes()
    files[4].write_bytes(data[: max(132, int(len(data) * keep_fraction))])
    with pytest.raises(DicomSeriesError, match=r"im004\.dcm.*(truncated|corrupt)"):
        load_series(tmp_path)


def test_reader_rejects_missing_folder(tmp_path):
    with pytest.raises(DicomSeriesError, match="not a folder"):
        load_series(tmp_path / "nope")


def test_real_ct_series_with_localizer_from_pydicom(tmp_path):
    ct_dir = TEST_FILES / "dicomdirtests/98892001/CT5N"  # a real 5-slice CT at a regular 2.5 mm step
    shutil.copytree(ct_dir, tmp_path / "study")
    for f in (ct_dir.parent / "CT2N").iterdir():  # the localizers of the same study
        shutil.copy(f, tmp_path / "study" / f"loc_{f.name}")
    image, datasets = load_series(tmp_path / "study")
    ref_voxels, ref_affine = sitk_volume(tmp_path / "study", str(datasets[0].SeriesInstanceUID))
    assert image.shape[-1] == 5
    np.testing.assert_array_equal(image[0].numpy(), ref_voxels)
    np.testing.assert_allclose(image.affine.numpy(), ref_affine, atol=1e-4)
    assert abs(abs(float(image.affine[2, 2])) - 2.5) < 1e-3


def test_real_mr_derived_projections_are_rejected(tmp_path):
    mr_dir = TEST_FILES / "dicomdirtests/98892003/MR700"  # derived MR angiography projections
    with pytest.raises(DicomSeriesError, match="MR700"):
        load_series(mr_dir)


def test_a_single_classic_slice_is_not_a_volume(tmp_path):
    files = write_series(tmp_path, _volume((12, 10, 1)))
    with pytest.raises(DicomSeriesError, match=r"no image series to read \(localizers and single-slice series are "
                                               r"skipped\); series present: .*1 files"):
        load_series(tmp_path)
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    with pytest.raises(DicomSeriesError, match="has 1 slice; a volume needs at least 2"):
        load_series(tmp_path, series_uid=uid)
