"""Tests for drdd_med.slicer_support.command: argv, environment and file naming contract."""

from __future__ import annotations

import sys

import pytest

from drdd_med.slicer_support.command import (
    build_translate_command,
    create_work_paths,
    expected_output_path,
    input_stem,
    translate_environment,
)


def test_command_with_all_options():
    command = build_translate_command("/d/in put.nii.gz", "/b", "/o", device="cuda", steps=(3, 1), samples=4)
    assert command == [sys.executable, "-m", "drdd_med.cli.main", "translate", "/d/in put.nii.gz", "--bundle", "/b",
                       "--out", "/o", "--device", "cuda", "--steps", "3,1", "--samples", "4"]


def test_command_console_script_and_defaults():
    assert build_translate_command("x.nrrd", "b", "o", console_script="drdd-med") == [
        "drdd-med", "translate", "x.nrrd", "--bundle", "b", "--out", "o", "--device", "auto"]
    assert build_translate_command("x", "b", "o", steps="2, 0", python="/py")[-2:] == ["--steps", "2,0"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"device": "gpu"}, "device"), ({"steps": "2"}, "R,N"), ({"steps": (0, 0)}, "at least one"),
     ({"steps": (0, 2)}, "residual stage needs at least one step"), ({"steps": (-1, 2)}, "residual_steps=-1"),
     ({"steps": (2, -1)}, "noise stage takes 0 to"), ({"steps": (1001, 0)}, "at most T=1000"),
     ({"samples": 0}, "samples")],
)
def test_command_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_translate_command("x", "b", "o", **kwargs)


def test_command_names_the_source_domain():
    assert build_translate_command("in.nii.gz", "b", "o", domain="t2w", python="/py")[-2:] == ["--domain", "t2w"]
    assert "--domain" not in build_translate_command("in.nii.gz", "b", "o", python="/py")
    with pytest.raises(ValueError, match="domain must be one of"):
        build_translate_command("in.nii.gz", "b", "o", domain="T2")


def test_environment_hides_gpu_for_cpu_only():
    assert translate_environment("cpu", {"A": "1"}) == {"A": "1", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "-1"}
    assert "CUDA_VISIBLE_DEVICES" not in translate_environment("cuda", {})


@pytest.mark.parametrize(("name", "stem"), [("case.nii.gz", "case"), ("a.b.NII", "a.b"), ("t1.nrrd", "t1"),
                                            ("dicom_folder", "dicom_folder"), ("x.mha", "x")])
def test_output_naming(name, stem):
    assert input_stem(f"/data/{name}") == stem
    assert expected_output_path(f"/data/{name}", "/out").as_posix() == f"/out/{stem}_sct.nii.gz"


def test_work_paths_are_private_and_sanitised(tmp_path):
    first = create_work_paths(tmp_path, "T1 MPRAGE/ä?")
    second = create_work_paths(tmp_path, "T1 MPRAGE/ä?")
    assert first.work_dir != second.work_dir and first.work_dir.parent == tmp_path
    assert first.input_path.name == "T1_MPRAGE.nii.gz"
    assert first.output_path == first.out_dir / "T1_MPRAGE_sct.nii.gz"
    assert create_work_paths(tmp_path, "???").input_path.name == "input.nii.gz"
