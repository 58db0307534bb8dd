from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from drdd_med.pacs.journal import FAILED, FOUND, RETRIEVED, STORED, TRANSLATED, Journal

UID, MV = "1.2.3.4", "model-1"


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "state" / "journal.sqlite") as j:
        yield j


def test_series_walks_through_the_states_and_survives_reopen(tmp_path, journal):
    assert journal.add_found(UID, MV, study_uid="1.2", selection="t1")
    journal.begin_attempt(UID, MV)
    journal.advance(UID, MV, RETRIEVED, source_instances=8, retrieve_s=0.5)
    journal.advance(UID, MV, TRANSLATED, sct_series_uid="9.9", sct_instances=8)
    journal.advance(UID, MV, STORED, store_s=0.2)
    entry = journal.get(UID, MV)
    assert (entry.state, entry.attempts, entry.source_instances, entry.sct_series_uid, entry.sct_instances) == (
        STORED, 1, 8, "9.9", 8)
    assert not journal.add_found(UID, MV, study_uid="1.2", selection="t1")  # known series untouched
    assert journal.get(UID, MV).state == STORED
    journal.close()
    with Journal(tmp_path / "state" / "journal.sqlite") as again:
        assert again.get(UID, MV) == entry and again.counts()[STORED] == 1
    con = sqlite3.connect(tmp_path / "state" / "journal.sqlite")
    events = [r[0] for r in con.execute("SELECT state FROM events ORDER BY id")]
    con.close()
    assert events == [FOUND, "attempt", RETRIEVED, TRANSLATED, STORED]


def test_model_version_is_part_of_the_key(journal):
    journal.add_found(UID, MV, study_uid="1.2", selection="t1")
    journal.advance(UID, MV, STORED)
    assert journal.add_found(UID, "model-2", study_uid="1.2", selection="t1")
    assert journal.get(UID, "model-2").state == FOUND and journal.get(UID, MV).state == STORED


def test_failures_back_off_exponentially_and_stop_after_max_attempts(journal):
    journal.add_found(UID, MV, study_uid="1.2", selection="t1")
    due_times = []
    for attempt in (1, 2, 3):
        assert journal.is_due(journal.get(UID, MV), max_attempts=3, now=time.time() + 10 ** 6)
        journal.begin_attempt(UID, MV)
        before = time.time()
        journal.fail(UID, MV, f"boom {attempt}", backoff_s=100.0)
        entry = journal.get(UID, MV)
        assert entry.state == FAILED and entry.reason == f"boom {attempt}" and entry.attempts == attempt
        due_times.append(entry.next_attempt_at - before)
        assert not journal.is_due(entry, max_attempts=3, now=before)  # backing off
    assert [round(d, -1) for d in due_times] == [100.0, 200.0, 400.0]
    assert not journal.is_due(journal.get(UID, MV), max_attempts=3, now=time.time() + 10 ** 6)  # exhausted


def test_stored_and_skipped_are_never_due(journal):
    for uid, final in (("1.1", STORED), ("1.2", "skipped")):
        journal.add_found(uid, MV, study_uid="9", selection=None)
        journal.skip(uid, MV, "no match") if final == "skipped" else journal.advance(uid, MV, STORED)
        assert not journal.is_due(journal.get(uid, MV), max_attempts=99, now=time.time() + 10 ** 6)
    assert journal.get("1.2", MV).reason == "no match"


def test_advance_rejects_unknown_states_and_fields(journal):
    journal.add_found(UID, MV, study_uid="1.2", selection="t1")
    with pytest.raises(ValueError, match="state"):
        journal.advance(UID, MV, FAILED)
    with pytest.raises(ValueError, match="PatientName"):
        journal.advance(UID, MV, RETRIEVED, PatientName="x")


def test_concurrent_writers_lose_no_update(journal):
    journal.add_found(UID, MV, study_uid="1.2", selection="t1")
    threads = [threading.Thread(target=lambda: [journal.begin_attempt(UID, MV) for _ in range(10)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert journal.get(UID, MV).attempts == 40


def test_runs_table_records_the_summary(tmp_path, journal):
    run_id = journal.start_run()
    journal.finish_run(run_id, selected=3, stored=2, failed=1, skipped=0, wall_s=4.0, series_per_hour=1800.0,
                       exit_code=1)
    con = sqlite3.connect(journal.path)
    row = con.execute("SELECT selected, stored, failed, series_per_hour, exit_code, finished IS NOT NULL "
                      "FROM runs").fetchone()
    con.close()
    assert row == (3, 2, 1, 1800.0, 1, 1)


def test_a_kill_is_an_interruption_not_a_failure(journal):
    journal.add_found(UID, MV, study_uid="1.2", selection="t1")
    for killed in (1, 2, 3, 4):  # more kills than max_attempts
        journal.begin_attempt(UID, MV)  # ... and the job dies here
        assert journal.recover_interrupted(max_interruptions=5) == [UID]
        entry = journal.get(UID, MV)
        assert (entry.state, entry.running, entry.interruptions, entry.attempts, entry.failures) == (
            FOUND, 0, killed, killed, 0)
        assert journal.is_due(entry, max_attempts=3)
    assert journal.recover_interrupted(max_interruptions=5) == []  # nothing running any more
    journal.begin_attempt(UID, MV)
    journal.fail(UID, MV, "PACS down", backoff_s=100.0)
    entry = journal.get(UID, MV)
    assert entry.failures == 1 and entry.next_attempt_at - time.time() == pytest.approx(100.0, abs=5)


def test_a_series_that_keeps_crashing_the_job_is_failed_with_a_reason(journal):
    journal.add_found(UID, MV, study_uid="1.2", selection="t1")
    for _ in range(3):
        journal.begin_attempt(UID, MV)
        journal.recover_interrupted(max_interruptions=3)
    entry = journal.get(UID, MV)
    assert entry.state == FAILED and entry.interruptions == 3 and "stopped 3 times" in entry.reason
    assert not journal.is_due(entry, max_attempts=3, max_interruptions=3)  # stays failed: the reason tells why


def test_only_steps_at_work_count_as_interrupted(journal):
    journal.add_found(UID, MV, study_uid="1.2", selection="t1")
    journal.begin_attempt(UID, MV)
    journal.advance(UID, MV, RETRIEVED)  # retrieved, waiting in the queue: not at work
    assert journal.get(UID, MV).running == 0
    assert journal.recover_interrupted(max_interruptions=5) == []  # a kill now is neither interruption nor failure
    assert journal.get(UID, MV).failures == 0
    journal.set_running(UID, MV)  # translation starts
    journal.advance(UID, MV, TRANSLATED, sct_series_uid="9.9", sct_instances=8)
    assert journal.get(UID, MV).running == 1  # C-STORE follows in the same step
    journal.clear_running()  # the pass ends without a crash
    assert journal.recover_interrupted(max_interruptions=5) == []
    journal.set_running(UID, MV)
    journal.advance(UID, MV, STORED)
    assert journal.get(UID, MV).running == 0


def test_a_journal_of_the_first_schema_gains_the_new_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE series (series_uid TEXT NOT NULL, model_version TEXT NOT NULL, study_uid TEXT NOT NULL,"
                " selection TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, reason TEXT,"
                " source_instances INTEGER, sct_series_uid TEXT, sct_instances INTEGER, retrieve_s REAL,"
                " translate_s REAL, store_s REAL, next_attempt_at REAL NOT NULL DEFAULT 0, first_seen TEXT NOT NULL,"
                " updated TEXT NOT NULL, PRIMARY KEY (series_uid, model_version))")
    con.execute("INSERT INTO series (series_uid, model_version, study_uid, state, attempts, first_seen, updated) "
                "VALUES (?, ?, '1.2', 'retrieved', 2, 'x', 'x')", (UID, MV))
    con.commit()
    con.close()
    with Journal(path) as journal:
        entry = journal.get(UID, MV)
        assert (entry.state, entry.attempts, entry.failures, entry.running, entry.interruptions) == (
            RETRIEVED, 2, 2, 0, 0)  # the first schema counted every attempt against max_attempts
        journal.begin_attempt(UID, MV)
        assert journal.recover_interrupted(max_interruptions=5) == [UID]
