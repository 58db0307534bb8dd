"""The PACS batch job with the real DRDD bundle translator against Orthanc: every stored sCT equals what
``drdd-med translate --dicom`` writes for the same MR series (same HU, same UIDs)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pacs_servers import c_store, job_config, phantom_archive

from drdd_med.pacs.config import parse_config
from drdd_med.pacs.job import EXIT_OK, PacsBatchJob
from drdd_med.pacs.translator import build_translator

pytestmark = [pytest.mark.pacs, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def tiny_bundle(make_tiny_bundle) -> Path:
    return make_tiny_bundle(seed=0, model_version="drdd-pacs-test")


def _hu(ds) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_bundle_translator_in_the_job_matches_drdd_med_translate(orthanc, tmp_path, tiny_bundle):
    selected, others = phantom_archive(num_patients=2)
    c_store(orthanc.dicom_port, orthanc.aet, [ds for s in selected.values() for ds in s] + others)
    raw = job_config(tmp_path / "state", orthanc.dicom_port, orthanc.aet, orthanc.scp_port, "move",
                     bundle=str(tiny_bundle), translator=None, inference={"device": "cpu"})
    config = parse_config(raw)
    summary = PacsBatchJob(config, build_translator(config)).run()
    assert summary.exit_code == EXIT_OK and sorted(summary.stored) == sorted(selected)

    for i, (uid, mr) in enumerate(selected.items()):
        src = tmp_path / f"mr{i}"
        src.mkdir()
        for ds in mr:
            ds.save_as(src / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        out = tmp_path / f"direct{i}"
        cmd = [sys.executable, "-m", "drdd_med.cli.main", "translate", str(src), "--bundle", str(tiny_bundle),
               "--out", str(out), "--dicom", "--device", "cpu", "--no-progress-lines"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)
        direct = {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, sorted(out.rglob("*.dcm")))}
        assert len(direct) == len(mr)

        scts = [s for s in orthanc.find_series({"StudyInstanceUID": str(mr[0].StudyInstanceUID), "Modality": "CT"})
                if "Synthetic CT" in s["MainDicomTags"].get("SeriesDescription", "")]
        assert len(scts) == 1, f"series {uid}: {len(scts)} sCT series"
        stored = [pydicom.dcmread(io.BytesIO(orthanc.instance_file(i_id))) for i_id in scts[0]["Instances"]]
        assert {str(d.SOPInstanceUID) for d in stored} == set(direct)  # same deterministic UIDs
        for d in stored:
            np.testing.assert_array_equal(_hu(d), _hu(direct[str(d.SOPInstanceUID)]))
        assert len({float(_hu(d).std()) for d in stored}) > 1  # a real, non-constant translation
