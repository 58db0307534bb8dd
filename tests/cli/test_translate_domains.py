"""``drdd-med translate`` with a model of several source domains: ``--domain``, domains read from DICOM headers,
folders that mix MR and CBCT series, and refusals that name the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from domain_series import write_source_series

from drdd_med.cli.main import main

AFFINE = np.diag([-2.5, -2.5, 4.0, 1.0])


@pytest.fixture(scope="module")
def bundle(make_tiny_bundle) -> Path:
    return make_tiny_bundle(seed=2, model_version="drdd-domains-cli", domains=["t1w", "cbct"])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(1)
    paths = {}
    for domain, volume in (("t1w", rng.gamma(2.0, 200.0, (12, 10, 3))), ("t2w", rng.gamma(3.0, 90.0, (12, 10, 3))),
                           ("cbct", rng.uniform(-1000, 1500, (12, 10, 3)))):
        paths[domain] = folder / f"{domain}.nii.gz"
        nib.save(nib.Nifti1Image(volume.astype(np.float32), AFFINE), str(paths[domain]))
    study = folder / "study"  # one folder holding a T1w, a T2w and a CBCT series of one study
    uid = pydicom.uid.generate_uid()
    for number, domain in enumerate(("t1w", "t2w", "cbct"), start=1):
        write_source_series(paths[domain], study / domain, domain, study_uid=uid, series_number=number)
    paths["study"] = study
    return paths


def _translate(capsys, *args) -> tuple[int, str]:
    code = main(["translate", *map(str, args), "--device", "cpu", "--threads", "1", "--no-progress-lines"])
    return code, capsys.readouterr().err


def test_a_domain_the_model_lacks_is_refused_naming_the_file(capsys, tmp_path, bundle, inputs):
    code, err = _translate(capsys, inputs["t2w"], "--domain", "t2w", "--bundle", bundle, "--out", tmp_path)
    assert code == 1
    assert (f"FAILED {inputs['t2w']}: source domain 't2w' is not one this model was trained on (t1w, cbct); use a "
            "model trained on it.") in err
    assert not list(tmp_path.glob("*.nii.gz"))


def test_a_nifti_input_without_domain_is_refused_saying_to_pass_it(capsys, tmp_path, bundle, inputs):
    code, err = _translate(capsys, inputs["cbct"], "--bundle", bundle, "--out", tmp_path)
    assert code == 1 and f"FAILED {inputs['cbct']}: no source domain named" in err
    assert "pass it: drdd-med translate --domain t1w|cbct" in err
    code, _ = _translate(capsys, inputs["cbct"], "--domain", "cbct", "--bundle", bundle, "--out", tmp_path)
    assert code == 0 and (tmp_path / "cbct_sct.nii.gz").is_file()


def test_a_study_folder_is_translated_series_by_series_as_each_header_shows(capsys, tmp_path, bundle, inputs):
    code, err = _translate(capsys, inputs["study"], "--bundle", bundle, "--out", tmp_path, "--dicom")
    assert code == 1  # the T2w series: the model has no T2w
    assert sorted(p.name for p in tmp_path.glob("*_sct.nii.gz")) == ["cbct_sct.nii.gz", "t1w_sct.nii.gz"]
    assert "(series " in err and "): the header of IM0001.dcm shows t2w: source domain 't2w' is not one" in err
    descriptions = {p.parent.name: pydicom.dcmread(p).DerivationDescription
                    for p in tmp_path.glob("*_sct_dicom/CT00001.dcm")}
    assert descriptions["cbct_sct_dicom"].startswith("Synthetic CT from CBCT (cbct) by DRDD")
    assert descriptions["t1w_sct_dicom"].startswith("Synthetic CT from MR (t1w) by DRDD")


def test_domain_names_the_domain_of_every_input_and_limits_a_folder_to_its_modality(capsys, tmp_path, bundle,
                                                                                     inputs):
    code, err = _translate(capsys, inputs["study"], "--domain", "cbct", "--bundle", bundle, "--out", tmp_path)
    assert code == 0, err
    assert [p.name for p in tmp_path.glob("*_sct.nii.gz")] == ["cbct_sct.nii.gz"]  # the MR series are skipped
    with pytest.raises(SystemExit) as info:
        main(["translate", str(inputs["t1w"]), "--domain", "pd", "--out", str(tmp_path)])
    assert info.value.code == 2 and "invalid choice: 'pd'" in capsys.readouterr().err
