"""``drdd-med translate`` on the bad inputs a hospital produces (docs/inputs.md): one batch run, one FAILED line per bad
input naming the file and the problem, the good inputs written, nothing written for the bad ones, and the outputs of
an earlier run left as they were. Also: output folders that cannot be written, failed writes, broken models."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from test_translate_cli import AFFINE, write_mr_series

from drdd_med.cli.main import main

PREVIOUS = b"output of an earlier run"

#: bad input -> the problem its FAILED line must state (regex, after "FAILED <input>: ").
ROWS = {
    "nan.nii.gz": r"143 of 715 voxels are NaN \(or inf\); the image cannot be normalised",
    "zeros.nii.gz": r"the image carries no signal \(every voxel is 0\)",
    "constant.nii.gz": r"the image carries no signal \(every voxel is 7\)",
    "nogeom.nii": r"unusable geometry: voxel spacing \[0\.0, 0\.0, 0\.0\] mm and no orientation \(qform_code = "
                  r"sform_code = 0\); the sCT could not be put back on the patient",
    "fourd.nii.gz": r"4D image \(shape \(13, 11, 5, 2\)\): give one 3D volume",
    "truncated.nii.gz": r"unreadable NIfTI file .*truncated or corrupt",
    "gap": r"series [0-9.]+: non-uniform slice spacing: a gap of 4\.000 mm at position 2\.000 mm between files "
           r"\S+001\.dcm and \S+003\.dcm",
    "duplicate": r"series [0-9.]+: duplicate slice position 4\.000 mm in \S+ and \S+: the same image",
    "ct": r"series [0-9.]+ has Modality CT, but this model translates MR \(model_config\.json source_modality\)",
    "enhanced": r"\S+emri\.dcm: multi-frame image \(Enhanced MR Image Storage, 10 frames in one file\) is not "
                r"supported",
    "jpegls": r"\S+0\.dcm: pixel data is compressed as JPEG-LS Lossless Image Compression "
              r"\(1\.2\.840\.10008\.1\.2\.4\.80\) and no decoder for it is installed",
}
#: good input -> output shape (the 2D slice becomes one slice on the same affine; a 4D file of one volume is 3D).
GOOD = {"good.nii.gz": (13, 11, 5), "slice2d.nii.gz": (13, 11, 1), "single4d.nii.gz": (13, 11, 5)}


def _stem(name: str) -> str:
    return name.split(".")[0]


def _write_inputs(root: Path) -> None:
    import struct

    mr = np.random.default_rng(2).gamma(2.0, 100.0, size=(13, 11, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(mr, AFFINE), root / "good.nii.gz")
    nib.save(nib.Nifti1Image(mr[:, :, 2], AFFINE), root / "slice2d.nii.gz")
    nib.save(nib.Nifti1Image(mr[..., None], AFFINE), root / "single4d.nii.gz")
    nan = mr.copy()
    nan[:, :, 2] = np.nan  # a slab: 13 x 11 voxels
    nib.save(nib.Nifti1Image(nan, AFFINE), root / "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros_like(mr), AFFINE), root / "zeros.nii.gz")
    nib.save(nib.Nifti1Image(np.full_like(mr, 7.0), AFFINE), root / "constant.nii.gz")
    nib.save(nib.Nifti1Image(np.stack([mr, mr], -1), AFFINE), root / "fourd.nii.gz")
    (root / "truncated.nii.gz").write_bytes((root / "good.nii.gz").read_bytes()[:200])
    nib.save(nib.Nifti1Image(mr, None), root / "nogeom.nii")  # then pixdim 0 and no form codes, as stored on disk
    raw = bytearray((root / "nogeom.nii").read_bytes())
    raw[76:108] = struct.pack("<8f", 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0)
    raw[252:256] = struct.pack("<hh", 0, 0)
    (root / "nogeom.nii").write_bytes(bytes(raw))
    write_mr_series(root / "gap", shape=(14, 12, 5), seed=6)
    (root / "gap" / "002.dcm").unlink()
    write_mr_series(root / "duplicate", shape=(14, 12, 4), seed=7)
    shutil.copy(root / "duplicate" / "002.dcm", root / "duplicate" / "002_copy.dcm")
    write_mr_series(root / "ct", shape=(14, 12, 4), seed=8, modality="CT")
    (root / "enhanced").mkdir()
    shutil.copy(get_testdata_file("emri_small.dcm", download=False), root / "enhanced" / "emri.dcm")
    (root / "jpegls").mkdir()
    uid = generate_uid()
    for k in range(3):  # a real JPEG-LS MR slice, restacked 2 mm apart (header edits only)
        ds = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm", download=False))
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [2.0 * k]
        ds.save_as(root / "jpegls" / f"{k}.dcm")


def _translate(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["translate", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def bundle(make_tiny_bundle) -> Path:
    return make_tiny_bundle(seed=1, model_version="drdd-inputs-test")


@pytest.fixture(scope="module")
def batch(tmp_path_factory, bundle) -> dict:
    """One run over every good and bad input; an earlier run's output sits where each bad input's would go."""
    root = tmp_path_factory.mktemp("inputs")
    _write_inputs(root)
    out = root / "out"
    out.mkdir()
    for name in ROWS:
        (out / f"{_stem(name)}_sct.nii.gz").write_bytes(PREVIOUS)
    inputs = [root / name for name in [*GOOD, *ROWS]]
    code, stdout, stderr = _translate(*inputs, "--bundle", bundle, "--out", out, "--device", "cpu",
                                      "--no-progress-lines")
    failed = {}
    for line in stderr.splitlines():
        if line.startswith("FAILED "):
            where, _, problem = line[len("FAILED "):].partition(": ")
            failed[Path(where).name] = problem
    return {"root": root, "out": out, "code": code, "stdout": stdout, "stderr": stderr, "failed": failed}


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_is_refused_in_one_line_naming_it_and_its_earlier_output_is_untouched(batch, name):
    if name == "jpegls":
        from pydicom.pixels import get_decoder
        from pydicom.uid import JPEGLSLossless

        if get_decoder(JPEGLSLossless).is_available:
            pytest.skip("a JPEG-LS decoder is installed here: the series is translated")
    assert name in batch["failed"], batch["stderr"]
    assert re.fullmatch(ROWS[name] + r".*", batch["failed"][name]), batch["failed"][name]
    assert (batch["out"] / f"{_stem(name)}_sct.nii.gz").read_bytes() == PREVIOUS


def test_the_good_inputs_of_the_batch_are_written_and_nothing_else(batch):
    assert batch["code"] == 1
    written = {p.name for p in batch["out"].iterdir()}
    expected = {f"{_stem(n)}_sct.nii.gz" for n in [*GOOD, *ROWS]}
    assert written == expected  # no staging folders or temporary files left behind either
    for name, shape in GOOD.items():
        source, sct = nib.load(batch["root"] / name), nib.load(batch["out"] / f"{_stem(name)}_sct.nii.gz")
        assert sct.shape == shape and sct.get_data_dtype() == np.int16
        np.testing.assert_allclose(sct.affine, source.affine, atol=1e-6)  # the 2D slice keeps its geometry
    assert f"{len(GOOD)} of {len(GOOD) + len(ROWS)} case(s) translated" in batch["stderr"]


def test_a_folder_mixing_a_classic_series_and_an_enhanced_file_translates_the_classic_one(tmp_path, bundle):
    write_mr_series(tmp_path / "mixed", shape=(14, 12, 4), seed=9, series_number=5)
    shutil.copy(get_testdata_file("emri_small.dcm", download=False), tmp_path / "mixed" / "emri.dcm")
    code, _, stderr = _translate(tmp_path / "mixed", "--bundle", bundle, "--out", tmp_path / "out", "--device", "cpu",
                                 "--no-progress-lines")
    assert code == 1
    assert re.search(r"FAILED \S+mixed \(series [0-9.]+\): \S+emri\.dcm: multi-frame image", stderr), stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mixed_s5_sct.nii.gz"]


@pytest.mark.parametrize("where", ["file", "below_a_file"])
def test_an_output_folder_that_cannot_be_written_exits_2_before_any_case(tmp_path, bundle, where):
    volume = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, AFFINE), tmp_path / "a.nii.gz")
    (tmp_path / "taken").write_text("a file, not a folder")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "out"
    code, _, stderr = _translate(tmp_path / "a.nii.gz", "--bundle", bundle, "--out", out, "--device", "cpu")
    assert code == 2
    assert f"error: {out}: the output folder cannot be written" in stderr and "pass a writable --out" in stderr


def test_a_failed_dicom_write_leaves_the_earlier_outputs_as_they_were(tmp_path, bundle, monkeypatch):
    from drdd_med.workflows.predictor import SCTPredictor

    nib.save(nib.Nifti1Image(np.random.default_rng(0).gamma(2.0, 100.0, (6, 5, 4)).astype(np.float32), AFFINE),
             tmp_path / "case.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "case_sct.nii.gz").write_bytes(PREVIOUS)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SCTPredictor, "save_dicom", disk_full)
    code, _, stderr = _translate(tmp_path / "case.nii.gz", "--bundle", bundle, "--out", out, "--dicom",
                                 "--device", "cpu", "--no-progress-lines")
    assert code == 1 and "No space left on device" in stderr
    assert [p.name for p in out.iterdir()] == ["case_sct.nii.gz"]  # no half-written case, no staging folder
    assert (out / "case_sct.nii.gz").read_bytes() == PREVIOUS


BROKEN_MODELS = {
    "truncated_weights": r"model\.pt: not a readable weights file \(RuntimeError: PytorchStreamReader",
    "empty_weights": r"model\.pt: not a readable weights file \(EOFError",
    "config_type": r"model_config\.json: model config value\(s\) of the wrong type: residual_steps='two' "
                   r"\(expected an integer\)",
    "config_other_preset": r"model\.pt: the weights do not fit the network described by model_config\.json",
}


@pytest.mark.parametrize("damage", list(BROKEN_MODELS))
def test_a_corrupt_or_mismatched_model_exits_2_naming_the_file(tmp_path, bundle, damage):
    broken = tmp_path / "bundle"
    shutil.copytree(bundle, broken)
    weights, config = broken / "models" / "model.pt", broken / "models" / "model_config.json"
    if damage == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[:3000])
    elif damage == "empty_weights":
        weights.write_bytes(b"")
    else:
        data = json.loads(config.read_text())
        data.update({"residual_steps": "two"} if damage == "config_type" else {"preset": "small"})
        config.write_text(json.dumps(data))
    code, _, stderr = _translate(tmp_path / "none.nii.gz", "--bundle", broken, "--out", tmp_path / "out")
    assert code == 2 and re.search(BROKEN_MODELS[damage], stderr), stderr
