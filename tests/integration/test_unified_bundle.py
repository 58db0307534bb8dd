"""One model for T1w MR, T2w MR and CBCT, trained by the bundle's own command on a tiny 3-domain phantom, then
``drdd-med translate`` on a T2w NIfTI, a T1w DICOM series and a CBCT DICOM series: three sCTs on their native grids."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from bundle_cli import TINY, TRAIN, run_bundle
from domain_series import write_source_series

from drdd_med.cli.main import main
from drdd_med.data.domains import SOURCE_NORMALIZE
from drdd_med.data.phantom import write_phantom_dataset
from drdd_med.workflows.model_config import ModelConfig

sitk = pytest.importorskip("SimpleITK")
pytestmark = pytest.mark.slow

DOMAINS = ["t1w", "t2w", "cbct"]


@pytest.fixture(scope="module")
def unified(tmp_path_factory):
    """(bundle root, spec path, training log) of a unified model trained on a 4-subject 3-domain phantom."""
    root = tmp_path_factory.mktemp("unified")
    spec = write_phantom_dataset(root / "data" / "unified", subjects=4, unpaired=2, shape=(32, 32, 16),
                                 spacing_mm=(6.6, 6.6, 10.5), domains=DOMAINS)
    log = run_bundle("run", "training", "--config_file", TRAIN, "--bundle_root", str(root), *TINY,
                     "--datalist", str(spec)).stdout
    return root, spec, log


def test_the_bundle_trains_one_model_for_every_domain(unified):
    root, spec, log = unified
    config = ModelConfig.load(root / "models" / "model_config.json")
    assert config.domains == DOMAINS and not config.domain_embedding
    assert config.domain_normalize == {d: SOURCE_NORMALIZE[d] for d in DOMAINS}
    report = json.loads((root / "eval" / "validation" / "metrics.json").read_text())
    assert [c["case"] for c in report["cases"]] == [f"phantom_002_{d}" for d in DOMAINS]
    assert "translated cbct.nii.gz (cbct)" in log and "translated t2w.nii.gz (t2w)" in log



def test_the_residual_stage_sees_every_pair_and_the_unconditional_noise_stage_each_ct_once(unified):
    from monai.bundle import ConfigParser

    root, spec, _ = unified
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update({"bundle_root": str(root), "datalist": str(spec), "noise_conditioned": False})
    residual, noise = parser.get_parsed_content("train#datalist"), parser.get_parsed_content("noise#datalist")
    assert sorted(item["domain"] for item in residual) == sorted(DOMAINS * 2)  # 2 training subjects x 3 domains
    targets = [item["target"] for item in noise]
    assert len(targets) == len(set(targets)) == 2 + 2 and set(noise[0]) == {"target"}  # 2 subjects + 2 CT-only


def _sitk_geometry(image) -> tuple:
    return (image.GetSize(), np.round(image.GetSpacing(), 4).tolist(), np.round(image.GetOrigin(), 3).tolist(),
            np.round(image.GetDirection(), 5).tolist())


def _read_series(folder: Path):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.fixture(scope="module")
def translated(unified, tmp_path_factory):
    """The test subject's T2w NIfTI, T1w DICOM series and CBCT DICOM series, translated by ``drdd-med translate``."""
    root, spec, _ = unified
    subject = spec.parent / "s003"
    work = tmp_path_factory.mktemp("translate")
    inputs = {"t2w": subject / "t2w.nii.gz", "t1w": work / "t1w_dicom", "cbct": work / "cbct_dicom"}
    write_source_series(subject / "mr.nii.gz", inputs["t1w"], "t1w")
    write_source_series(subject / "cbct.nii.gz", inputs["cbct"], "cbct")
    out = work / "out"
    common = ["--bundle", str(root), "--out", str(out), "--device", "cpu", "--threads", "1", "--no-progress-lines"]
    codes = [main(["translate", str(inputs["t2w"]), "--domain", "t2w", *common]),
             main(["translate", str(inputs["t1w"]), str(inputs["cbct"]), "--dicom", *common])]
    return inputs, out, codes


def test_translate_writes_three_scts_on_their_native_grids(translated):
    inputs, out, codes = translated
    assert codes == [0, 0]
    pairs = {"t2w": (sitk.ReadImage(str(inputs["t2w"])), out / "t2w_sct.nii.gz"),
             "t1w": (_read_series(inputs["t1w"]), out / "t1w_dicom_sct.nii.gz"),
             "cbct": (_read_series(inputs["cbct"]), out / "cbct_dicom_sct.nii.gz")}
    for domain, (source, sct_path) in pairs.items():
        sct = sitk.ReadImage(str(sct_path))
        assert _sitk_geometry(sct) == _sitk_geometry(source), domain
        values = sitk.GetArrayFromImage(sct)
        assert sct.GetPixelID() == sitk.sitkInt16 and -1024 <= values.min() and values.max() <= 3071, domain
    cbct_sct = _read_series(out / "cbct_dicom_sct_dicom")
    assert _sitk_geometry(cbct_sct) == _sitk_geometry(pairs["cbct"][0])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(cbct_sct),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(out / "cbct_dicom_sct.nii.gz"))))
    first = pydicom.dcmread(sorted((out / "cbct_dicom_sct_dicom").glob("*.dcm"))[0])
    assert first.DerivationDescription.startswith("Synthetic CT from CBCT (cbct) by DRDD")
    assert pydicom.dcmread(sorted((out / "t1w_dicom_sct_dicom").glob("*.dcm"))[0]).DerivationDescription \
        .startswith("Synthetic CT from MR (t1w) by DRDD")


@pytest.mark.dicomtools
def test_the_sct_of_the_cbct_series_passes_dciodvfy(translated):
    _, out, _ = translated
    files = sorted((out / "cbct_dicom_sct_dicom").glob("*.dcm"))
    assert len(files) == 16  # one per slice of the CBCT
    for path in files:
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=30)
        report = result.stdout + result.stderr
        assert result.returncode == 0 and not [line for line in report.splitlines() if line.startswith("Error")], \
            report


def test_the_domain_embedding_trains_through_the_bundle(unified, tmp_path):
    _, spec, _ = unified
    run_bundle("run", "training", "--config_file", TRAIN, "--bundle_root", str(tmp_path), *TINY,
               "--datalist", str(spec), "--domain_embedding", "True")
    config = ModelConfig.load(tmp_path / "models" / "model_config.json")
    weights = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert config.domain_embedding and weights["residual_net.class_embedding.weight"].shape[0] == 3
    assert not any(k.startswith("noise_net.class_embedding") for k in weights)
    report = json.loads((tmp_path / "eval" / "validation" / "metrics.json").read_text())
    assert report["num_cases"] == 3 and all(np.isfinite(c["mae"]) for c in report["cases"])
