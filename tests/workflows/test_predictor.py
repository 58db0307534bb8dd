"""SCTPredictor: oracle exactness on oblique/flipped grids in every mode, std maps, NIfTI <-> DICOM agreement, UIDs."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from oracles import oracle_drdd_net
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from drdd_med import keys
from drdd_med.diffusion.anchor import source_anchor
from drdd_med.io.dicom_series import load_series
from drdd_med.workflows.model_config import ModelConfig
from drdd_med.workflows.predictor import SCTPredictor

#: A left-right and anterior-posterior flipped, slightly rotated grid with anisotropic voxels (not RAS-aligned).
_C, _S = np.cos(0.2), np.sin(0.2)
AFFINE = np.array([[-0.9 * _C, -1.1 * _S, 0.0, 12.0], [-0.9 * _S, 1.1 * _C, 0.0, -7.0], [0.0, 0.0, -2.5, 30.0],
                   [0.0, 0.0, 0.0, 1.0]])


def mr_volume(shape=(18, 14, 6), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(2.0, 150.0, size=shape).astype(np.float32)


def write_mr_series(folder: Path, volume: np.ndarray, series_uid: str | None = None, series_number: int = 3,
                    pixel_spacing=(1.1, 0.9), step_mm=2.5) -> Path:
    """Write an axial MR series (X = columns, Y = rows, Z = slices), slices in shuffled file order."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid, for_uid = series_uid or generate_uid(), generate_uid(), generate_uid()
    for k in np.random.default_rng(1).permutation(volume.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
        ds.PatientName, ds.PatientID, ds.Modality, ds.SeriesNumber = "Test^Patient", "P1", "MR", series_number
        ds.ImageType, ds.InstanceNumber = ["ORIGINAL", "PRIMARY"], int(k) + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -8.0, 4.0 + float(k) * step_mm]
        ds.PixelSpacing, ds.SliceThickness = list(pixel_spacing), step_mm
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T.astype(np.uint16)).tobytes()
        ds.save_as(folder / f"MR{k:03d}.dcm", enforce_file_format=True)
    return folder


@pytest.fixture(scope="module")
def bundle(make_tiny_bundle) -> Path:
    """A 'trained' bundle: a seeded, untrained tiny 2D DRDDNet with its model_config.json."""
    return make_tiny_bundle(seed=0, model_version="drdd-test-1")


def _identity_oracle_hu(mr: np.ndarray) -> np.ndarray:
    """The sCT of a perfect model whose 'CT' in [-1, 1] equals the normalised MR, in HU, computed in numpy: the MR's
    0.5 / 99.5 percentile window to [-1, 1] (clipped), then [-1, 1] to the HU window."""
    lo, hi = np.percentile(mr, [0.5, 99.5])
    unit = np.clip((mr - lo) / (hi - lo) * 2.0 - 1.0, -1.0, 1.0)
    return np.rint((unit + 1.0) / 2.0 * (keys.HU_MAX - keys.HU_MIN) + keys.HU_MIN)


@pytest.mark.parametrize("mode,num_slices", [("2d", 1), ("2.5d", 3), ("3d", 1)])
def test_oracle_sct_is_exact_on_native_flipped_grid(tmp_path, mode, num_slices):
    mr = mr_volume()
    nib.save(nib.Nifti1Image(mr, AFFINE), tmp_path / "mr.nii.gz")
    config = ModelConfig(mode=mode, num_slices=num_slices, roi_size=[8, 8, 4])
    predictor = SCTPredictor(oracle_drdd_net(1, target_fn=lambda s: source_anchor(s, 1)), config, device="cpu")
    result = predictor.predict(tmp_path / "mr.nii.gz")
    assert result.hu.shape == (1, *mr.shape) and result.std_hu is None and result.source_datasets is None
    np.testing.assert_allclose(result.affine, AFFINE, atol=1e-5)
    diff = np.abs(result.hu[0].numpy() - _identity_oracle_hu(mr))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # +-1 HU only where float rounding straddles .5

    written = predictor.save_nifti(result, tmp_path / "out", "mr")
    assert [p.name for p in written] == ["mr_sct.nii.gz"]
    image = nib.load(written[0])
    assert image.shape == mr.shape and image.get_data_dtype() == np.int16
    np.testing.assert_allclose(image.affine, nib.load(tmp_path / "mr.nii.gz").affine, atol=1e-6)
    assert np.array_equal(np.asarray(image.dataobj), result.hu[0].numpy().astype(np.int16))


def test_samples_give_mean_and_std_maps(tmp_path, bundle):
    mr = mr_volume(seed=2)
    nib.save(nib.Nifti1Image(mr, AFFINE), tmp_path / "mr.nii.gz")
    result = SCTPredictor.from_bundle(bundle, device="cpu", num_samples=2).predict(tmp_path / "mr.nii.gz")
    single = [SCTPredictor.from_bundle(bundle, device="cpu").predict(tmp_path / "mr.nii.gz").hu for _ in range(2)]
    assert torch.equal(single[0], single[1])  # seeded: reruns are identical
    std = result.std_hu[0].numpy()
    assert std.shape == mr.shape and std.min() >= 0 and std.max() > 0
    paths = SCTPredictor.from_bundle(bundle, device="cpu", num_samples=2).save_nifti(result, tmp_path / "out", "x")
    assert [p.name for p in paths] == ["x_sct.nii.gz", "x_sct_std.nii.gz"]
    std_image = nib.load(paths[1])
    assert std_image.get_data_dtype() == np.float32 and np.allclose(std_image.affine, AFFINE, atol=1e-5)
    np.testing.assert_allclose(np.asarray(std_image.dataobj), std, rtol=1e-6)


def test_dicom_input_round_trips_through_dicom_output(tmp_path, bundle):
    source = write_mr_series(tmp_path / "mr", mr_volume(shape=(16, 12, 5), seed=3))
    predictor = SCTPredictor.from_bundle(bundle, device="cpu")
    result = predictor.predict(source)
    mr, headers = load_series(source)
    np.testing.assert_allclose(result.affine, mr.affine, atol=1e-6)
    assert [h.SOPInstanceUID for h in result.source_datasets] == [h.SOPInstanceUID for h in headers]

    nifti = nib.load(predictor.save_nifti(result, tmp_path / "out", "mr")[0])
    files = predictor.save_dicom(result, tmp_path / "out" / "mr_sct_dicom")
    sct, sct_headers = load_series(files[0].parent)
    assert np.array_equal(sct[0].numpy(), np.asarray(nifti.dataobj).astype(np.float32))
    np.testing.assert_allclose(sct.affine, nifti.affine, atol=1e-4)
    assert sct_headers[0].StudyInstanceUID == headers[0].StudyInstanceUID
    assert sct_headers[0].SoftwareVersions[-1] == "model drdd-test-1"
    assert "2+2 steps" in sct_headers[0].DerivationDescription

    again = predictor.save_dicom(predictor.predict(source), tmp_path / "out" / "mr_sct_dicom")
    uids = lambda fs: [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in fs]  # noqa: E731
    assert uids(again) == uids(files)


def test_nifti_dicom_uids_follow_the_file_content_and_the_sampling_settings(tmp_path, bundle):
    mr = mr_volume(shape=(12, 10, 3), seed=4)
    nib.save(nib.Nifti1Image(mr, AFFINE), tmp_path / "a.nii.gz")
    nib.save(nib.Nifti1Image(mr + 1, AFFINE), tmp_path / "b.nii.gz")
    default = SCTPredictor.from_bundle(bundle, device="cpu")
    more_steps = SCTPredictor.from_bundle(bundle, device="cpu", residual_steps=3)
    assert default.output_version == "drdd-test-1" and more_steps.output_version != default.output_version

    def series_uid(predictor, name, out):
        files = predictor.save_dicom(predictor.predict(tmp_path / name), tmp_path / out)
        return pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID

    first = series_uid(default, "a.nii.gz", "a1")
    assert series_uid(default, "a.nii.gz", "a2") == first
    (tmp_path / "moved").mkdir()
    (tmp_path / "a.nii.gz").rename(tmp_path / "moved" / "a.nii.gz")
    assert series_uid(default, "moved/a.nii.gz", "a3") == first  # same content, other path: same series
    assert series_uid(default, "b.nii.gz", "b") != first
    assert series_uid(more_steps, "moved/a.nii.gz", "a4") != first


def test_bad_inputs_name_the_path(tmp_path, bundle):
    predictor = SCTPredictor.from_bundle(bundle, device="cpu")
    with pytest.raises(ValueError, match="nope.nii.gz: no such file"):
        predictor.predict(tmp_path / "nope.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt: expected a NIfTI file"):
        predictor.predict(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="Train the bundle first"):
        SCTPredictor.from_bundle(tmp_path, device="cpu")
