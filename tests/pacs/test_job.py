from __future__ import annotations

import fcntl
import sqlite3

import pytest

from drdd_med.pacs.config import parse_config
from drdd_med.pacs.job import EXIT_FAILED_SERIES, EXIT_OK, EXIT_PACS_ERROR, JobLockedError, JobSummary, PacsBatchJob
from drdd_med.pacs.journal import FAILED, FOUND, RETRIEVED, STORED, Journal


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


def _work_folders(job, journal, rows):
    """Journal rows {uid: state} of the job's model version, each with a work folder holding a file."""
    for uid, state in rows.items():
        journal.add_found(uid, job.translator.model_version, study_uid="1.2", selection=None)
        if state == "skipped":
            journal.skip(uid, job.translator.model_version, "no match")
        elif state != FOUND:
            journal.advance(uid, job.translator.model_version, state)
        (job.work_dir(uid) / "sct").mkdir(parents=True)
        (job.work_dir(uid) / "sct" / "CT00001.dcm").write_bytes(b"x")


@pytest.mark.parametrize("keep_work", [False, True])
def test_work_folders_of_finished_or_unknown_series_are_removed(tmp_path, free_port, keep_work):
    job = PacsBatchJob(_config(tmp_path, free_port(), keep_work=keep_work), EchoTranslator())
    with Journal(job.config.journal_path) as journal:
        _work_folders(job, journal, {"1.1": STORED, "1.2": "skipped", "1.3": FOUND, "1.4": RETRIEVED})
    unknown = job.work_dir("1.5")
    unknown.mkdir()
    other_model = job.config.work_dir / "1.6-0000beef"  # another model version's folder is left alone
    other_model.mkdir()
    assert job.run().exit_code == EXIT_PACS_ERROR  # the clean-up comes before the query
    left = sorted(p.name.split("-")[0] for p in job.config.work_dir.iterdir())
    assert left == (["1.1", "1.3", "1.4", "1.6"] if keep_work else ["1.3", "1.4", "1.6"])


def test_a_series_running_when_the_job_died_is_counted_and_goes_last(tmp_path, free_port):
    job = PacsBatchJob(_config(tmp_path, free_port(), max_interruptions=2), EchoTranslator())
    version = job.translator.model_version
    with Journal(job.config.journal_path) as journal:
        for uid in ("1.1", "1.2", "1.3"):
            journal.add_found(uid, version, study_uid="1.2", selection=None)
        journal.begin_attempt("1.1", version)  # a job was killed while retrieving 1.1 ...
        journal.begin_attempt("1.3", version)
        journal.advance("1.3", version, RETRIEVED)  # ... with 1.3 retrieved, waiting: not at work
    assert job.run().exit_code == EXIT_PACS_ERROR
    with Journal(job.config.journal_path) as journal:
        entries = {e.series_uid: e for e in journal.entries()}
        assert {uid: (e.interruptions, e.running, e.failures) for uid, e in entries.items()} == {
            "1.1": (1, 0, 0), "1.2": (0, 0, 0), "1.3": (0, 0, 0)}
        planned = [p.series_uid for p in job._plan(journal, [], version, dry_run=True)]
        assert planned == ["1.2", "1.3", "1.1"]
        journal.begin_attempt("1.1", version)  # killed again: 2 = max_interruptions
    job.run()
    with Journal(job.config.journal_path) as journal:
        entry = journal.get("1.1", version)
        assert entry.state == FAILED and "stopped 2 times" in entry.reason
        assert "1.1" not in [p.series_uid for p in job._plan(journal, [], version, dry_run=True)]
