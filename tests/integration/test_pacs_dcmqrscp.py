"""The PACS batch job against a second, independent PACS: dcmtk's ``dcmqrscp`` (forking mode) on 127.0.0.1.

dcmqrscp answers only hierarchical queries and returns few series attributes (no SeriesDescription, no ImageType),
so the T2 series and the localizer are undecided at C-FIND time and must be skipped after retrieval, on their full
headers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pacs_servers import c_store, job_config, phantom_archive
from pacs_translator import MODEL_VERSION, LinearTranslator

from drdd_med.pacs.config import parse_config
from drdd_med.pacs.job import EXIT_OK, PacsBatchJob
from drdd_med.pacs.journal import Journal

pytestmark = [pytest.mark.pacs, pytest.mark.timeout(120)]


def _hu(ds) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _stored_sct(server) -> dict[str, list]:
    """sCT instances in dcmqrscp's storage area, by source SeriesInstanceUID (read from its files)."""
    by_source: dict[str, list] = {}
    for path in Path(server.store_dir).iterdir():
        if path.name == "index.dat":
            continue
        ds = pydicom.dcmread(path)
        if ds.Modality == "CT" and "Synthetic" in str(ds.get("SeriesDescription", "")):
            by_source.setdefault(str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID), []).append(ds)
    return by_source


@pytest.mark.parametrize("retrieve", ["move", "get"])
def test_batch_job_against_dcmqrscp(dcmqrscp, tmp_path, retrieve):
    selected, others = phantom_archive(num_patients=2)
    c_store(dcmqrscp.port, dcmqrscp.aet, [ds for s in selected.values() for ds in s] + others)
    raw = job_config(tmp_path / "state", dcmqrscp.port, dcmqrscp.aet, dcmqrscp.scp_port, retrieve)
    cfg = parse_config(raw)

    summary = PacsBatchJob(cfg, LinearTranslator()).run()
    assert summary.exit_code == EXIT_OK and sorted(summary.stored) == sorted(selected)
    t2_and_scout = {str(ds.SeriesInstanceUID) for ds in others if ds.Modality == "MR"}
    assert set(summary.skipped) == t2_and_scout  # undecided at C-FIND, excluded on the full headers

    stored = _stored_sct(dcmqrscp)
    assert sorted(stored) == sorted(selected)
    with Journal(cfg.journal_path) as journal:
        for uid, mr in selected.items():
            sct = stored[uid]
            entry = journal.get(uid, MODEL_VERSION)
            assert entry.state == "stored" and entry.sct_instances == len(mr) == len(sct)
            assert {str(d.SeriesInstanceUID) for d in sct} == {entry.sct_series_uid}
            assert {str(d.StudyInstanceUID) for d in sct} == {str(mr[0].StudyInstanceUID)}
            assert {str(d.FrameOfReferenceUID) for d in sct} == {str(mr[0].FrameOfReferenceUID)}
            src = tmp_path / f"direct_{uid}"
            src.mkdir()
            for ds in mr:
                ds.save_as(src / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
            direct = {str(d.SOPInstanceUID): _hu(d) for d in map(pydicom.dcmread, LinearTranslator().translate_series(
                src, tmp_path / f"direct_out_{uid}"))}
            assert set(direct) == {str(d.SOPInstanceUID) for d in sct}
            for d in sct:
                np.testing.assert_array_equal(_hu(d), direct[str(d.SOPInstanceUID)])

    again = PacsBatchJob(cfg, LinearTranslator()).run()
    assert again.exit_code == EXIT_OK and again.planned == []
