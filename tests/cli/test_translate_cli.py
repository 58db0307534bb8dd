"""``drdd-med translate`` end to end on CPU with a tiny bundle: NIfTI, DICOM, many-series folders, failures, reruns."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from drdd_med.cli.main import main
from drdd_med.io.dicom_series import load_series
from drdd_med.slicer_support.command import build_translate_command, expected_output_path
from drdd_med.slicer_support.progress import parse_progress
from drdd_med.workflows.predictor import SCTPredictor

AFFINE = np.array([[-1.2, 0, 0, 20.0], [0, 0.9, 0, -11.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]])


def write_mr_series(folder: Path, shape=(14, 12, 4), seed=0, series_number=5, modality="MR") -> Path:
    """An axial MR series with a non-square pixel grid; one file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    volume = np.random.default_rng(seed).integers(0, 800, size=shape)
    series_uid, study_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    for k in range(shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.ImageType = modality, series_number, k + 1, ["ORIGINAL"]
        ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [-7.0, 3.0, 2.0 * k]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 1.3], 2.0
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = shape[1], shape[0], 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(volume[:, :, k].T.astype(np.uint16)).tobytes()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return folder


@pytest.fixture(scope="module")
def bundle(make_tiny_bundle) -> Path:
    return make_tiny_bundle(seed=1, model_version="drdd-cli-test")


@pytest.fixture()
def inputs(tmp_path) -> dict[str, Path]:
    mr = np.random.default_rng(2).gamma(2.0, 100.0, size=(13, 11, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(mr, AFFINE), tmp_path / "case1.nii.gz")
    (tmp_path / "broken.nii.gz").write_bytes((tmp_path / "case1.nii.gz").read_bytes()[:60])
    return {"nifti": tmp_path / "case1.nii.gz", "dicom": write_mr_series(tmp_path / "t1_head"),
            "broken": tmp_path / "broken.nii.gz"}


def _translate(capsys, *args) -> tuple[int, str, str]:
    code = main(["translate", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _uids(folder: Path) -> list[str]:
    return [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in sorted(folder.glob("*.dcm"))]


def test_translate_nifti_and_dicom_with_a_corrupt_case_among_them(tmp_path, capsys, bundle, inputs):
    out = tmp_path / "out"
    code, stdout, stderr = _translate(capsys, inputs["nifti"], inputs["broken"], inputs["dicom"], "--bundle", bundle,
                                      "--out", out, "--dicom", "--device", "cpu")
    assert code == 1
    assert f"FAILED {inputs['broken']}: unreadable NIfTI file" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["case1_sct.nii.gz", "case1_sct_dicom", "t1_head_sct.nii.gz",
                                                     "t1_head_sct_dicom"]
    # NIfTI in -> same grid out, int16 HU
    source, sct = nib.load(inputs["nifti"]), nib.load(expected_output_path(inputs["nifti"], out))
    assert sct.shape == source.shape and sct.get_data_dtype() == np.int16
    np.testing.assert_allclose(sct.affine, source.affine, atol=1e-6)
    hu = np.asarray(sct.dataobj)
    assert hu.min() >= -1024 and hu.max() <= 3071
    # DICOM in -> the DICOM series reads back as the NIfTI output, on the MR series' grid
    mr, _ = load_series(inputs["dicom"])
    nifti = nib.load(out / "t1_head_sct.nii.gz")
    ct, headers = load_series(out / "t1_head_sct_dicom")
    assert np.array_equal(ct[0].numpy(), np.asarray(nifti.dataobj).astype(np.float32))
    np.testing.assert_allclose(ct.affine, nifti.affine, atol=1e-4)
    np.testing.assert_allclose(ct.affine, mr.affine, atol=1e-4)
    assert headers[0].Modality == "CT" and "NOT FOR DIAGNOSTIC USE" in headers[0].SeriesDescription
    # progress lines: monotonic, ending at total/total (3 cases, the broken one included, x 4 network evaluations)
    events = [e for e in map(parse_progress, stdout.splitlines()) if e is not None]
    assert events[-1].done == events[-1].total == 12
    assert [e.done for e in events] == sorted(e.done for e in events)

    first = {name: _uids(out / name) for name in ("case1_sct_dicom", "t1_head_sct_dicom")}
    code, _, _ = _translate(capsys, inputs["nifti"], inputs["dicom"], "--bundle", bundle, "--out", out, "--dicom",
                            "--device", "cpu", "--no-progress-lines")
    assert code == 0
    assert {name: _uids(out / name) for name in first} == first
    assert np.array_equal(np.asarray(nib.load(out / "t1_head_sct.nii.gz").dataobj), np.asarray(nifti.dataobj))


def test_body_part_is_written_for_nifti_inputs_and_the_series_validates(tmp_path, capsys, bundle, inputs):
    out = tmp_path / "out"
    code, _, stderr = _translate(capsys, inputs["nifti"], "--bundle", bundle, "--out", out, "--dicom",
                                 "--body-part", "head", "--device", "cpu")
    assert code == 0, stderr
    files = sorted((out / "case1_sct_dicom").glob("*.dcm"))
    assert files and {pydicom.dcmread(f, stop_before_pixels=True).BodyPartExamined for f in files} == {"HEAD"}
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    report = subprocess.run([dciodvfy, str(files[0])], capture_output=True, text=True, timeout=60)
    assert report.returncode == 0 and "Error" not in report.stdout + report.stderr, report.stderr


def test_samples_write_std_map_and_slicer_command_is_understood(tmp_path, capsys, bundle, inputs):
    command = build_translate_command(inputs["nifti"], bundle, tmp_path / "o", device="cpu", steps=(1, 1), samples=2)
    assert command[3] == "translate"
    code, stdout, _ = _translate(capsys, *command[4:])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["case1_sct.nii.gz", "case1_sct_std.nii.gz"]
    std = nib.load(tmp_path / "o" / "case1_sct_std.nii.gz")
    assert std.shape == nib.load(inputs["nifti"]).shape and np.asarray(std.dataobj).min() >= 0
    events = [e for e in map(parse_progress, stdout.splitlines()) if e is not None]
    assert events[-1].done == events[-1].total == (1 + 1) * 2  # steps x samples


def test_folder_of_many_series_translates_each_source_series(tmp_path, capsys, bundle):
    export = tmp_path / "export"
    write_mr_series(export / "t1", seed=3, series_number=3)
    write_mr_series(export / "t2", seed=4, series_number=4)
    write_mr_series(export / "ct", seed=5, series_number=2, modality="CT")
    code, _, stderr = _translate(capsys, export, "--bundle", bundle, "--out", tmp_path / "out", "--device", "cpu",
                                 "--no-progress-lines")
    assert code == 0, stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t1_sct.nii.gz", "t2_sct.nii.gz"]


def test_missing_model_and_bad_options_exit_2(tmp_path, capsys, inputs):
    code, _, stderr = _translate(capsys, inputs["nifti"], "--bundle", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and "Train the bundle first" in stderr
    with pytest.raises(SystemExit) as exc:
        main(["translate", str(inputs["nifti"]), "--out", str(tmp_path), "--steps", "two"])
    assert exc.value.code == 2 and "--steps 'two'" in capsys.readouterr().err
    for steps, problem in (("0,4", "residual_steps=0: the residual stage needs at least one step"),
                           ("2,-1", "noise_steps=-1")):
        with pytest.raises(SystemExit) as exc:
            main(["translate", str(inputs["nifti"]), "--out", str(tmp_path), "--steps", steps])
        assert exc.value.code == 2 and f"--steps '{steps}': {problem}" in capsys.readouterr().err


def test_noise_correlation_reaches_the_sampler(tmp_path, capsys, bundle, inputs):
    """``--noise-correlation`` samples as the predictor with that correlation does, not as the default."""
    hu = {}
    for rho in (None, "1"):
        out = tmp_path / f"out_{rho}"
        extra = ("--noise-correlation", rho) if rho else ()
        code, _, stderr = _translate(capsys, inputs["nifti"], "--bundle", bundle, "--out", out, "--device", "cpu",
                                     "--no-progress-lines", *extra)
        assert code == 0, stderr
        hu[rho] = np.asarray(nib.load(out / "case1_sct.nii.gz").dataobj)
    expected = SCTPredictor.from_bundle(bundle, device="cpu", noise_correlation=1.0).predict(inputs["nifti"]).hu
    assert np.abs(hu["1"] - expected[0].numpy()).max() <= 0.5  # the file holds the rounded HU
    assert np.abs(hu[None].astype(float) - hu["1"]).max() > 1  # the default (0.5) is another noise field
    with pytest.raises(SystemExit) as exc:
        main(["translate", str(inputs["nifti"]), "--out", str(tmp_path), "--noise-correlation", "-0.1"])
    assert exc.value.code == 2 and "expected a number in [0, 1]" in capsys.readouterr().err


def test_a_sampler_trained_model_refuses_another_residual_step_count_and_writes_nothing(tmp_path, capsys,
                                                                                        make_tiny_bundle, inputs):
    bundle = make_tiny_bundle(residual_steps=1, residual_train_timesteps="sampler")
    out = tmp_path / "out"
    code, _, stderr = _translate(capsys, inputs["nifti"], "--bundle", bundle, "--out", out, "--steps", "2,2")
    assert code == 2 and "trained only at the timesteps of 1 residual step(s)" in stderr and "--steps 1,N" in stderr
    assert not out.exists()
    code, _, stderr = _translate(capsys, inputs["nifti"], "--bundle", bundle, "--out", out, "--steps", "1,3",
                                 "--device", "cpu", "--no-progress-lines")
    assert code == 0, stderr  # the noise steps stay free
    assert [p.name for p in out.iterdir()] == [f"{inputs['nifti'].name.split('.')[0]}_sct.nii.gz"]


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["translate", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "_sct.nii.gz" in text and "exit status" in text
