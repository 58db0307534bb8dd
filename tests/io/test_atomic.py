"""The one atomic writer: output modes with umask 022 across every writer, and interrupted writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from drdd_med.io.atomic import atomic_dir, atomic_file, staged_files, write_atomic
from drdd_med.io.dicom_writer import write_sct_series
from drdd_med.io.nifti import save_nifti
from drdd_med.workflows.evaluate import evaluate_cases
from drdd_med.workflows.model_config import ModelConfig, save_model


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """``umask(value)`` sets the process umask for this test; the previous one is restored afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def test_every_output_is_0o644_and_every_folder_0o755_with_umask_022(tmp_path, umask):
    umask(0o022)
    config_path, weights_path = save_model(torch.nn.Linear(2, 2), ModelConfig(), tmp_path / "bundle")
    rng = np.random.default_rng(0)
    ct, mr = rng.uniform(-1000, 1000, (16, 16, 8)), rng.uniform(0, 1, (16, 16, 8))
    sct = save_nifti(tmp_path / "out" / "mr_sct.nii.gz", ct.astype(np.int16), np.eye(4), np.int16)
    mr_path = save_nifti(tmp_path / "out" / "mr.nii.gz", mr, np.eye(4))
    series = write_sct_series(ct, np.eye(4), tmp_path / "out" / "mr_sct_dicom", model_version="v1",
                              source_uid_seed="mr.nii.gz", body_part_examined="HEAD")
    evaluate_cases([{"id": "c0", "source": str(mr_path), "target": str(sct)}],
                   lambda path: nib.load(sct).get_fdata() + 10.0, tmp_path / "eval")
    files = {"model.pt": weights_path, "model_config.json": config_path, "sCT NIfTI": sct,
             "DICOM instance": series[0], "montage PNG": tmp_path / "eval" / "montages" / "c0.png",
             "metrics JSON": tmp_path / "eval" / "metrics.json"}
    assert {name: oct(_mode(p)) for name, p in files.items()} == {name: "0o644" for name in files}
    assert {oct(_mode(p)) for p in series} == {"0o644"}
    assert oct(_mode(series[0].parent)) == "0o755"
    assert _hidden(tmp_path) == []  # no temporary file or folder left behind


def test_modes_are_explicit_and_the_umask_still_applies(tmp_path, umask):
    umask(0o077)
    assert oct(_mode(write_atomic(tmp_path / "private.json", "{}"))) == "0o600"
    with atomic_dir(tmp_path / "series") as folder:
        (folder / "a.dcm").write_bytes(b"x")
    assert oct(_mode(tmp_path / "series")) == "0o700"
    umask(0o022)
    assert oct(_mode(write_atomic(tmp_path / "script", b"#!", mode=0o755))) == "0o755"


def test_the_mode_survives_a_writer_that_replaces_the_temporary_file(tmp_path, umask):
    umask(0o022)
    with atomic_file(tmp_path / "out.bin") as tmp:
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # as tempfile.mkstemp would create it
        os.close(fd)
    assert oct(_mode(tmp_path / "out.bin")) == "0o644"


def _interrupt_after_partial_write(tmp: Path) -> None:
    tmp.write_bytes(b"half of the ")
    raise KeyboardInterrupt


def test_an_interrupted_file_write_leaves_the_previous_file_and_no_partial_one(tmp_path):
    path = write_atomic(tmp_path / "metrics.json", '{"old": 1}')
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(path) as tmp:
            _interrupt_after_partial_write(tmp)
    assert path.read_text() == '{"old": 1}' and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(tmp_path / "new.json") as tmp:
            _interrupt_after_partial_write(tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_an_interrupted_nifti_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def killed(image, filename):
        Path(filename).write_bytes(b"\x1f\x8b partial gzip")
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_nifti(tmp_path / "mr_sct.nii.gz", np.zeros((4, 4, 2)), np.eye(4))
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_series_write_keeps_the_previous_series_whole(tmp_path, monkeypatch):
    from pydicom.dataset import Dataset

    out = tmp_path / "sct_dicom"
    kwargs = dict(model_version="v1", source_uid_seed="seed", body_part_examined="HEAD")
    first = write_sct_series(np.zeros((4, 4, 3)), np.eye(4), out, **kwargs)
    save_as, calls = Dataset.save_as, []

    def dies_on_the_second_file(self, filename, *args, **kw):
        calls.append(filename)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return save_as(self, filename, *args, **kw)

    monkeypatch.setattr(Dataset, "save_as", dies_on_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        write_sct_series(np.full((4, 4, 3), 100.0), np.eye(4), out, **kwargs)
    assert sorted(out.iterdir()) == first and sorted(p.name for p in tmp_path.iterdir()) == ["sct_dicom"]
    assert {int(v) for p in first for v in np.unique(pydicom.dcmread(p).pixel_array)} == {1024}  # the old 0 HU




def test_staged_files_appear_together_or_not_at_all(tmp_path):
    (tmp_path / "a_sct.nii.gz").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_files(tmp_path) as staging:
            (staging / "a_sct.nii.gz").write_text("new")
            raise RuntimeError("the DICOM series could not be written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_sct.nii.gz"]
    assert (tmp_path / "a_sct.nii.gz").read_text() == "old"
    with staged_files(tmp_path) as staging:
        (staging / "a_sct.nii.gz").write_text("new")
        (staging / "a_sct_std.nii.gz").write_text("std")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_sct.nii.gz", "a_sct_std.nii.gz"]
    assert (tmp_path / "a_sct.nii.gz").read_text() == "new"
