"""The PACS batch job against Orthanc and dcmqrscp with a source domain per selection rule: each retrieved series is
translated as the domain of the rule its full headers match (dcmqrscp returns no SeriesDescription, so at C-FIND
time every MR series is undecided between the rules), and a rule without a domain leaves it to the translator."""

from __future__ import annotations

import pytest
from pacs_servers import c_store, job_config, make_series
from pacs_translator import LinearTranslator
from pydicom.uid import generate_uid

from drdd_med.io.dicom_series import load_series
from drdd_med.pacs.config import parse_config
from drdd_med.pacs.job import EXIT_OK, PacsBatchJob

pytestmark = [pytest.mark.pacs, pytest.mark.timeout(240)]

RULES = {"selections": [
    {"name": "t1", "domain": "t1w", "conditions": {"Modality": "MR", "SeriesDescription": "(?i)t1"}},
    {"name": "cbct", "domain": "cbct", "conditions": {"Modality": "CT", "SeriesDescription": "(?i)cbct"}},
    {"name": "any_mr", "conditions": {"Modality": "MR"}}]}


class RecordingTranslator(LinearTranslator):
    """The linear test translator, recording the domain the job passes for each series (by its description)."""

    def __init__(self) -> None:
        super().__init__()
        self.domains: dict[str, str | None] = {}

    def translate_series(self, series_dir, out_dir, **options):
        _, datasets = load_series(series_dir)
        self.domains[str(datasets[0].SeriesDescription)] = options.get("domain")
        return super().translate_series(series_dir, out_dir)


@pytest.mark.parametrize("server", ["orthanc", "dcmqrscp"])
def test_each_series_is_translated_as_the_domain_of_its_rule(server, request, tmp_path):
    pacs = request.getfixturevalue(server)
    port = pacs.dicom_port if server == "orthanc" else pacs.port
    study = generate_uid()
    series = [make_series(patient="PH100", study_uid=study, description="T1 axial", seed=1, series_number=1),
              make_series(patient="PH100", study_uid=study, description="T2 axial", seed=2, series_number=2),
              make_series(patient="PH100", study_uid=study, modality="CT", description="CBCT head", seed=3,
                          series_number=3),
              make_series(patient="PH100", study_uid=study, modality="CT", description="planning CT", seed=4,
                          series_number=4)]
    c_store(port, pacs.aet, [ds for s in series for ds in s])
    config = parse_config(job_config(tmp_path / "state", port, pacs.aet, pacs.scp_port, "move",
                                     query={"StudyDate": "20260101-"}, rules=RULES))
    translator = RecordingTranslator()
    summary = PacsBatchJob(config, translator).run()
    assert summary.exit_code == EXIT_OK and len(summary.stored) == 3, summary
    assert translator.domains == {"T1 axial": "t1w", "T2 axial": None, "CBCT head": "cbct"}
