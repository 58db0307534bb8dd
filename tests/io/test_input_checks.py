"""Input checks (drdd_med.io.input_checks) and the NIfTI side of VolumeReader: each refusal, its message, and the
inputs that must still be accepted (a 2D slice, a 4D file holding one volume, a header without orientation)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged

from drdd_med.io.input_checks import (
    MAX_VOXELS_ENV,
    check_nifti_header,
    check_size,
    check_source,
    dicom_modality,
    load_source,
)
from drdd_med.io.nifti import VolumeReader
from drdd_med.transforms.pipelines import inference_transforms

AFFINE = np.array([[-1.2, 0, 0, 20.0], [0, 0.9, 0, -11.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]])


def mr(shape=(13, 11, 5), seed=2) -> np.ndarray:
    return np.random.default_rng(seed).gamma(2.0, 100.0, size=shape).astype(np.float32)


def write_raw_geometry(path: Path, volume: np.ndarray, pixdim=(0.0, 0.0, 0.0), qform_code=0, sform_code=0,
                       srow=None) -> Path:
    """An uncompressed NIfTI-1 whose pixdim / form codes / srows are patched into the bytes as given
    (nibabel's writer would 'fix' a zero spacing to 1 mm, which is exactly what must not happen silently)."""
    nib.save(nib.Nifti1Image(volume, None), path)
    raw = bytearray(path.read_bytes())
    raw[76:108] = struct.pack("<8f", 1.0, *pixdim, 1.0, 1.0, 1.0, 1.0)
    raw[252:256] = struct.pack("<hh", qform_code, sform_code)
    if srow is not None:
        raw[280:328] = struct.pack("<12f", *np.asarray(srow, dtype=np.float32).ravel())
    path.write_bytes(bytes(raw))
    return path


def load(path: Path):
    loader = LoadImaged("image", reader=VolumeReader(), image_only=True, ensure_channel_first=True)
    return loader({"image": str(path)})["image"]


# ----------------------------------------------------------------------------------------------- geometry
def test_zero_spacing_without_orientation_is_refused_although_nibabel_would_invent_1mm(tmp_path):
    path = write_raw_geometry(tmp_path / "nogeom.nii", mr())
    assert np.allclose(nib.load(path).header.get_zooms(), 1.0)  # the silent repair this check exists for
    with pytest.raises(ValueError, match=r"nogeom\.nii: unusable geometry: voxel spacing \[0\.0, 0\.0, 0\.0\] mm "
                                         r"and no orientation \(qform_code = sform_code = 0\); the sCT could not be "
                                         r"put back"):
        check_nifti_header(path)
    with pytest.raises(ValueError, match="unusable geometry"):  # the reader runs the check before reading voxels
        load(path)


def test_degenerate_sform_and_qform_are_refused(tmp_path):
    flat = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0.0, 0]]  # the slice axis maps to nothing
    with pytest.raises(ValueError, match=r"the sform \(sform_code 1\) is degenerate"):
        check_nifti_header(write_raw_geometry(tmp_path / "s.nii", mr(), pixdim=(1, 1, 1), sform_code=1, srow=flat))
    with pytest.raises(ValueError, match=r"the qform \(qform_code 1\) with voxel spacing \[1\.0, 1\.0, 0\.0\] mm"):
        check_nifti_header(write_raw_geometry(tmp_path / "q.nii", mr(), pixdim=(1, 1, 0), qform_code=1))


def test_valid_sform_wins_over_zero_pixdim_and_no_orientation_with_spacing_is_accepted(tmp_path, caplog):
    good_sform = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 2.0, 0]]
    check_nifti_header(write_raw_geometry(tmp_path / "s.nii", mr(), pixdim=(0, 0, 0), sform_code=1, srow=good_sform))
    volume = mr()
    path = write_raw_geometry(tmp_path / "analyze.nii", volume, pixdim=(1.5, 1.5, 3.0))
    with caplog.at_level(logging.WARNING, logger="drdd_med.io.input_checks"):
        image = load(path)
    assert "no orientation" in caplog.text
    np.testing.assert_array_equal(image[0].numpy(), volume)
    np.testing.assert_allclose(image.affine.numpy(), nib.load(path).affine, atol=1e-6)


def test_rgb_and_empty_headers_are_refused(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii.gz")
    with pytest.raises(ValueError, match=r"rgb\.nii\.gz: voxels are .* \(RGB colour\); give a greyscale"):
        check_nifti_header(tmp_path / "rgb.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(7, np.float32), np.eye(4)), tmp_path / "line.nii.gz")
    with pytest.raises(ValueError, match=r"line\.nii\.gz: the header describes no image"):
        check_nifti_header(tmp_path / "line.nii.gz")


@pytest.mark.parametrize("content", [b"", b"\x1f\x8b garbage", None], ids=["empty", "bad_gzip", "truncated_header"])
def test_unreadable_nifti_names_the_file(tmp_path, content):
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(mr(), AFFINE), path)
    path.write_bytes(path.read_bytes()[:60] if content is None else content)
    with pytest.raises(ValueError, match=r"bad\.nii\.gz: unreadable NIfTI file .*re-export it"):
        load(path)


def test_truncated_voxel_data_names_the_file(tmp_path):
    path = tmp_path / "cut.nii"
    nib.save(nib.Nifti1Image(mr(), AFFINE), path)
    path.write_bytes(path.read_bytes()[:-200])  # header intact, voxels cut
    with pytest.raises(ValueError, match=r"cut\.nii: unreadable NIfTI file"):
        load(path)


# ----------------------------------------------------------------------------------------------- 2D and 4D
def test_2d_nifti_is_read_as_a_one_slice_volume_on_its_affine(tmp_path):
    slice_ = mr()[:, :, 2]
    nib.save(nib.Nifti1Image(slice_, AFFINE), tmp_path / "slice.nii.gz")
    image = load(tmp_path / "slice.nii.gz")
    assert tuple(image.shape) == (1, 13, 11, 1)
    np.testing.assert_array_equal(image[0, :, :, 0].numpy(), slice_)
    np.testing.assert_allclose(image.affine.numpy(), AFFINE, atol=1e-6)


def test_4d_is_refused_and_a_trailing_singleton_is_a_3d_volume(tmp_path):
    volume = mr()
    nib.save(nib.Nifti1Image(np.stack([volume, volume], -1), AFFINE), tmp_path / "two.nii.gz")
    nib.save(nib.Nifti1Image(volume[..., None], AFFINE), tmp_path / "one.nii.gz")
    with pytest.raises(ValueError, match=r"two\.nii\.gz: 4D image \(shape \(13, 11, 5, 2\)\): give one 3D volume"):
        check_source(tmp_path / "two.nii.gz", load(tmp_path / "two.nii.gz"))
    image = check_source(tmp_path / "one.nii.gz", load(tmp_path / "one.nii.gz"))
    np.testing.assert_array_equal(image[0].numpy(), volume)
    # a model trained on two source channels takes the two-volume file
    check_source(tmp_path / "two.nii.gz", load(tmp_path / "two.nii.gz"), source_channels=2)


# ----------------------------------------------------------------------------------------------- voxel values
def test_nan_and_inf_voxels_are_counted_exactly(tmp_path):
    volume = mr()
    volume[:, :, 2] = np.nan  # a slab of 13 x 11 voxels
    volume[0, 0, 0] = np.inf
    image = MetaTensor(torch.from_numpy(volume)[None])
    with pytest.raises(ValueError, match=r"^x\.nii\.gz: 144 of 715 voxels are NaN \(or inf\)"):
        check_source("x.nii.gz", image)


@pytest.mark.parametrize("value", [0.0, 7.5])
def test_constant_images_carry_no_signal(value):
    with pytest.raises(ValueError, match=rf"^x\.nii\.gz: the image carries no signal \(every voxel is {value:g}\)"):
        check_source("x.nii.gz", MetaTensor(torch.full((1, 4, 4, 3), value)))
    varied = torch.full((1, 4, 4, 3), value)
    varied[0, 1, 1, 1] += 1
    check_source("x.nii.gz", MetaTensor(varied))  # one voxel of signal is still signal


def test_wrong_dicom_modality_is_refused_and_cbct_models_take_ct_series():
    image = MetaTensor(torch.rand(1, 4, 4, 3), meta={"modality": "CT", "source_series_uid": "1.2.3"})
    with pytest.raises(ValueError, match=r"^ct: series 1\.2\.3 has Modality CT, but this model translates MR"):
        check_source("ct", image, source_modality="MR")
    check_source("ct", image, source_modality="CBCT")
    check_source("ct", image, source_modality="T1w")  # not a DICOM modality: nothing to compare
    assert (dicom_modality("cbct"), dicom_modality("MR"), dicom_modality("T1w")) == ("CT", "MR", None)


# ----------------------------------------------------------------------------------------------- size
def test_size_limit_from_the_environment(monkeypatch):
    check_size("big", (512, 512, 300))
    monkeypatch.setenv(MAX_VOXELS_ENV, "1e6")
    with pytest.raises(ValueError, match=r"^big: 512x512x300 volume \(79 M voxels\) needs about 2\.2 GiB of memory, "
                                         r"more than the limit DRDD_MED_MAX_VOXELS=1e6; crop or resample"):
        check_size("big", (512, 512, 300))
    monkeypatch.setenv(MAX_VOXELS_ENV, "lots")
    with pytest.raises(ValueError, match="DRDD_MED_MAX_VOXELS='lots'"):
        check_size("big", (2, 2, 2))


def test_a_volume_larger_than_memory_is_refused_from_its_header_before_reading(tmp_path):
    path = tmp_path / "huge.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), AFFINE), path)
    header = nib.load(path).header.copy()
    header.set_data_shape((8000, 8000, 8000))  # 5.1e11 voxels: more than any machine's memory
    path.write_bytes(header.binaryblock + b"\0" * 4)  # and no voxel data at all
    with pytest.raises(ValueError, match=r"huge\.nii: 8000x8000x8000 volume .* GiB of memory, more than this machine"):
        load(path)


# ----------------------------------------------------------------------------------------------- the predictor's path
def test_load_source_runs_the_checks_between_loading_and_normalisation(tmp_path):
    volume = mr()
    volume[:, :, 1] = np.nan
    nib.save(nib.Nifti1Image(volume, AFFINE), tmp_path / "nan.nii.gz")
    pre = inference_transforms("2d")
    with pytest.raises(ValueError, match=r"nan\.nii\.gz: 143 of 715 voxels are NaN"):
        load_source(tmp_path / "nan.nii.gz", pre)
    nib.save(nib.Nifti1Image(mr(), AFFINE), tmp_path / "ok.nii.gz")
    expected = pre({"image": str(tmp_path / "ok.nii.gz")})["image"]
    got = load_source(tmp_path / "ok.nii.gz", pre)["image"]
    assert torch.equal(got.as_tensor(), expected.as_tensor())
    assert [op["class"] for op in got.applied_operations] == [op["class"] for op in expected.applied_operations]
    with pytest.raises(ValueError, match=r"missing\.nii\.gz: no such file or folder"):
        load_source(tmp_path / "missing.nii.gz", pre)
