from __future__ import annotations

import fcntl
import sqlite3

import pytest

from drdd_med.pacs.config import parse_config
from drdd_med.pacs.job import EXIT_FAILED_SERIES, EXIT_OK, EXIT_PACS_ERROR, JobLockedError, JobSummary, PacsBatchJob


class EchoTranslator:
    """A translator for the job paths that never reach translation."""

    model_version = "echo-1"

    def translate_series(self, series_dir, out_dir):
        raise AssertionError("not reached in these tests")


def _config(tmp_path, port, **overrides):
    return parse_config({
        "pacs": {"host": "127.0.0.1", "port": port, "ae_title": "PACS"}, "port": 0, "retrieve": "get",
        "rules": {"selections": [{"conditions": {"Modality": "MR"}}]}, "state_dir": str(tmp_path / "state"),
        "acse_timeout_s": 2, "connection_timeout_s": 2, **overrides})


def test_unreachable_pacs_gives_exit_code_2_removes_orphans_and_records_the_run(tmp_path, free_port):
    cfg = _config(tmp_path, free_port())
    orphan = cfg.work_dir / "1.2.3-abcdef12" / "source.partial"
    orphan.mkdir(parents=True)
    (orphan / "half.dcm").write_bytes(b"\0" * 10)
    summary = PacsBatchJob(cfg, EchoTranslator()).run()
    assert summary.exit_code == EXIT_PACS_ERROR and f"PACS@127.0.0.1:{cfg.pacs.port}" in summary.error
    assert not orphan.exists() and orphan.parent.exists()
    con = sqlite3.connect(cfg.journal_path)
    assert con.execute("SELECT exit_code, selected FROM runs").fetchall() == [(EXIT_PACS_ERROR, 0)]
    con.close()


def test_second_job_on_the_same_state_dir_is_refused(tmp_path):
    cfg = _config(tmp_path, 1)
    cfg.state_dir.mkdir(parents=True)
    with open(cfg.state_dir / "job.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(JobLockedError, match="another pacs-batch job"):
            PacsBatchJob(cfg, EchoTranslator()).run()


def test_summary_exit_code_and_rate():
    summary = JobSummary(stored=["a", "b"], wall_s=7200.0)
    assert summary.exit_code == EXIT_OK and summary.series_per_hour == pytest.approx(1.0)
    summary.failed["c"] = "boom"
    assert summary.exit_code == EXIT_FAILED_SERIES
    summary.error = "PACS down"
    assert summary.exit_code == EXIT_PACS_ERROR
