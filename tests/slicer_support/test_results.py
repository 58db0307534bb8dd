"""Tests for drdd_med.slicer_support.results: finding the output and checking its grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from drdd_med.slicer_support.results import check_result_geometry, describe_exit, find_result

AFFINE = np.array([[-0.9, 0, 0, 10], [0, -1.1, 0, 5], [0, 0, 2.0, -3], [0, 0, 0, 1]])


def save(path, shape=(6, 5, 4), affine=AFFINE):
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), affine), str(path))
    return path


def test_find_and_check_matching_result(tmp_path):
    source = save(tmp_path / "mr.nii.gz")
    (tmp_path / "out").mkdir()
    output = save(tmp_path / "out" / "mr_sct.nii.gz")
    assert find_result(tmp_path / "out", source) == output
    check_result_geometry(source, output)


def test_missing_result_names_expected_file(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "other.nii.gz").touch()
    with pytest.raises(FileNotFoundError, match=r"mr_sct\.nii\.gz.*other\.nii\.gz"):
        find_result(tmp_path / "out", tmp_path / "mr.nii.gz")


@pytest.mark.parametrize(("shape", "affine", "match"), [((6, 5, 3), AFFINE, "shape"),
                                                        ((6, 5, 4), AFFINE + np.diag([0, 0, 0.01, 0]), "affine")])
def test_geometry_mismatch_raises(tmp_path, shape, affine, match):
    source = save(tmp_path / "mr.nii.gz")
    output = save(tmp_path / "mr_sct.nii.gz", shape, affine)
    with pytest.raises(ValueError, match=match):
        check_result_geometry(source, output)


def test_describe_exit():
    assert describe_exit(0) is None
    assert "signal 9" in describe_exit(-9)
    message = describe_exit(2, [f"line {i}" for i in range(20)])
    assert "exit code 2" in message and "line 19" in message and "line 9" not in message
