"""SQLite journal of the PACS batch job: one row per (source series, model version), plus an event log.

States, in order: ``found`` (selected from C-FIND) -> ``retrieved`` (complete series on disk) -> ``translated``
(sCT series written) -> ``stored`` (every sCT instance accepted by the destination). ``failed`` carries a reason and
is retried once its exponential backoff has elapsed, while it has failed fewer than ``max_attempts`` times;
``skipped`` means the full headers did not match the selection rules (final). A state always names the last step
that *completed*, so a row left in ``retrieved``/``translated`` by a killed run is simply resumed. Every write is one
SQLite transaction, so a kill -9 leaves either the old or the new row, never half of one.

``attempts`` counts the attempts started, ``failures`` those that ended in ``failed``: only failures use up
``max_attempts``. ``running`` is set while a step of the row is being worked on; a row still ``running`` when the next
pass starts was cut short by a kill or a crash (:meth:`Journal.recover_interrupted` counts it in ``interruptions``).
A kill is not a failure, but a series that stops the job ``max_interruptions`` times is marked ``failed`` (a poison
pill that crashes the decoder or exhausts memory must not stop every later pass).

The journal holds UIDs, counts, timings and reasons only: no patient names or IDs.

Example:
    >>> with Journal(tmp_path / "journal.sqlite") as journal:   # doctest: +SKIP
    ...     journal.add_found("1.2.3", "m1", study_uid="1.2", selection="t1")
    ...     journal.begin_attempt("1.2.3", "m1")
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["Journal", "JournalEntry", "STATES", "FOUND", "RETRIEVED", "TRANSLATED", "STORED", "FAILED", "SKIPPED"]

FOUND, RETRIEVED, TRANSLATED, STORED = "found", "retrieved", "translated", "stored"
FAILED, SKIPPED = "failed", "skipped"
STATES = (FOUND, RETRIEVED, TRANSLATED, STORED, FAILED, SKIPPED)
_FINAL = (STORED, SKIPPED)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS series (
    series_uid       TEXT NOT NULL,               -- source SeriesInstanceUID
    model_version    TEXT NOT NULL,               -- a new model version processes the series again
    study_uid        TEXT NOT NULL,
    selection        TEXT,                        -- name of the matching selection rule
    state            TEXT NOT NULL CHECK (state IN {STATES!r}),
    attempts         INTEGER NOT NULL DEFAULT 0,
    reason           TEXT,                        -- why the last attempt failed / was skipped
    source_instances INTEGER,
    sct_series_uid   TEXT,
    sct_instances    INTEGER,
    retrieve_s       REAL,
    translate_s      REAL,
    store_s          REAL,
    next_attempt_at  REAL NOT NULL DEFAULT 0,     -- unix time; retry backoff
    failures         INTEGER NOT NULL DEFAULT 0,  -- attempts that ended in 'failed'
    running          INTEGER NOT NULL DEFAULT 0,  -- 1 while a step of this row is being worked on
    interruptions    INTEGER NOT NULL DEFAULT 0,  -- steps cut short by a kill or a crash (not failures)
    first_seen       TEXT NOT NULL,               -- ISO-8601 UTC
    updated          TEXT NOT NULL,
    PRIMARY KEY (series_uid, model_version)
);
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    series_uid    TEXT NOT NULL,
    model_version TEXT NOT NULL,
    state         TEXT NOT NULL,
    detail        TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    started         TEXT NOT NULL,
    finished        TEXT,
    selected        INTEGER, stored INTEGER, failed INTEGER, skipped INTEGER,
    wall_s          REAL,
    series_per_hour REAL,
    exit_code       INTEGER
);
"""
_FIELDS = ("series_uid", "model_version", "study_uid", "selection", "state", "attempts", "reason", "source_instances",
           "sct_series_uid", "sct_instances", "retrieve_s", "translate_s", "store_s", "next_attempt_at",
           "first_seen", "updated", "failures", "running", "interruptions")
#: Columns added after the first release: (name, definition, value for the existing rows). Older journals counted
#: every attempt against max_attempts, so their failures start at ``attempts``.
_ADDED_COLUMNS = (("failures", "INTEGER NOT NULL DEFAULT 0", "attempts"),
                  ("running", "INTEGER NOT NULL DEFAULT 0", None),
                  ("interruptions", "INTEGER NOT NULL DEFAULT 0", None))
_UPDATABLE = {"source_instances", "sct_series_uid", "sct_instances", "retrieve_s", "translate_s", "store_s"}


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class JournalEntry:
    """One journal row (see the module docstring for the states)."""

    series_uid: str
    model_version: str
    study_uid: str
    selection: str | None
    state: str
    attempts: int
    reason: str | None
    source_instances: int | None
    sct_series_uid: str | None
    sct_instances: int | None
    retrieve_s: float | None
    translate_s: float | None
    store_s: float | None
    next_attempt_at: float
    first_seen: str
    updated: str
    failures: int = 0
    running: int = 0
    interruptions: int = 0


class Journal:
    """Thread-safe SQLite journal (one connection, serialised by a lock; autocommit per transaction).

    Args:
        path: SQLite file, created with its parent folder if missing.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.executescript(_SCHEMA)
            present = {row[1] for row in self._conn.execute("PRAGMA table_info(series)")}
            for name, definition, initial in _ADDED_COLUMNS:
                if name not in present:
                    self._conn.execute("BEGIN IMMEDIATE")
                    self._conn.execute(f"ALTER TABLE series ADD COLUMN {name} {definition}")
                    if initial is not None:
                        self._conn.execute(f"UPDATE series SET {name} = {initial}")
                    self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, sql: str, params: tuple, event: tuple[str, str, str, str | None] | None = None) -> int:
        """Run one statement (+ an optional event row) in a single transaction; return rows changed."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                changed = self._conn.execute(sql, params).rowcount
                if event is not None and changed:
                    self._conn.execute("INSERT INTO events (at, series_uid, model_version, state, detail) "
                                       "VALUES (?, ?, ?, ?, ?)", (_now_iso(), *event))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return changed

    def get(self, series_uid: str, model_version: str) -> JournalEntry | None:
        """The row of one source series for one model version, or ``None``."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM series WHERE series_uid = ? AND model_version = ?",
                                     (series_uid, model_version)).fetchone()
        return None if row is None else JournalEntry(**{k: row[k] for k in _FIELDS})

    def entries(self, state: str | None = None) -> list[JournalEntry]:
        """All rows (optionally of one state), oldest first."""
        sql, params = "SELECT * FROM series", ()
        if state is not None:
            sql, params = sql + " WHERE state = ?", (state,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY first_seen, series_uid", params).fetchall()
        return [JournalEntry(**{k: r[k] for k in _FIELDS}) for r in rows]

    def add_found(self, series_uid: str, model_version: str, *, study_uid: str, selection: str | None) -> bool:
        """Record a newly selected series as ``found``; a known series is left untouched.

        Returns:
            ``True`` if the row is new.
        """
        now = _now_iso()
        return bool(self._write(
            "INSERT OR IGNORE INTO series (series_uid, model_version, study_uid, selection, state, first_seen, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", (series_uid, model_version, study_uid, selection, FOUND, now, now),
            (series_uid, model_version, FOUND, f"selected by {selection!r}")))

    def is_due(self, entry: JournalEntry, max_attempts: int, now: float | None = None,
               max_interruptions: int | None = None) -> bool:
        """Whether a row should be (re)processed now: not final, fewer than ``max_attempts`` failures (and fewer
        than ``max_interruptions`` interruptions, if given), backoff elapsed."""
        now = time.time() if now is None else now
        if max_interruptions is not None and entry.interruptions >= max_interruptions:
            return False
        return entry.state not in _FINAL and entry.failures < max_attempts and entry.next_attempt_at <= now

    def begin_attempt(self, series_uid: str, model_version: str) -> None:
        """Count one more attempt and mark the row ``running`` (before any work, so that a series that crashes the
        job is found by the next pass's :meth:`recover_interrupted`)."""
        self._write("UPDATE series SET attempts = attempts + 1, running = 1, updated = ? "
                    "WHERE series_uid = ? AND model_version = ?",
                    (_now_iso(), series_uid, model_version), (series_uid, model_version, "attempt", None))

    def set_running(self, series_uid: str, model_version: str, running: bool = True) -> None:
        """Mark that a step of the row starts (``True``) or that the row waits between steps (``False``)."""
        self._write("UPDATE series SET running = ? WHERE series_uid = ? AND model_version = ?",
                    (int(running), series_uid, model_version))

    def recover_interrupted(self, max_interruptions: int) -> list[str]:
        """Count, for every row still ``running``, one interruption (the previous job died during one of its
        steps), and mark ``failed`` the rows interrupted ``max_interruptions`` times. Call it holding the job lock,
        before any work.

        Returns:
            The source series UIDs found interrupted.
        """
        with self._lock:
            rows = self._conn.execute("SELECT series_uid, model_version, interruptions FROM series "
                                      "WHERE running = 1").fetchall()
        for uid, version, before in rows:
            count = before + 1
            if count >= max_interruptions:
                reason = (f"the job stopped {count} times while working on this series (killed, crashed or out of "
                          "memory); reset attempts and interruptions to try again")
                self._write("UPDATE series SET state = ?, reason = ?, running = 0, interruptions = ?, updated = ? "
                            "WHERE series_uid = ? AND model_version = ?",
                            (FAILED, reason, count, _now_iso(), uid, version), (uid, version, FAILED, reason))
            else:
                self._write("UPDATE series SET running = 0, interruptions = ?, updated = ? "
                            "WHERE series_uid = ? AND model_version = ?", (count, _now_iso(), uid, version),
                            (uid, version, "interrupted", f"interruptions={count}"))
        return [uid for uid, _, _ in rows]

    def clear_running(self) -> None:
        """Clear every ``running`` mark: the job ends normally (a stop or an exception is not a crash)."""
        self._write("UPDATE series SET running = 0 WHERE running = 1", ())

    def advance(self, series_uid: str, model_version: str, state: str, **fields: object) -> None:
        """Record a completed step (``retrieved``/``translated``/``stored``) with its counts and timings."""
        if state not in (FOUND, RETRIEVED, TRANSLATED, STORED):
            raise ValueError(f"advance(): state must be found/retrieved/translated/stored, got {state!r}")
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"advance(): unknown field(s) {sorted(unknown)}; allowed {sorted(_UPDATABLE)}")
        sets = "".join(f", {k} = ?" for k in fields)
        running = ", running = 0" if state in (RETRIEVED, STORED) else ""  # waiting in the queue, or done
        self._write(f"UPDATE series SET state = ?, reason = NULL, updated = ?{sets}{running} "
                    "WHERE series_uid = ? AND model_version = ?",
                    (state, _now_iso(), *fields.values(), series_uid, model_version),
                    (series_uid, model_version, state, ", ".join(f"{k}={v}" for k, v in fields.items()) or None))

    def fail(self, series_uid: str, model_version: str, reason: str, backoff_s: float) -> None:
        """Mark a series ``failed``; the next attempt waits ``backoff_s * 2**(failures - 1)`` seconds."""
        self._write("UPDATE series SET state = ?, reason = ?, updated = ?, running = 0, failures = failures + 1, "
                    "next_attempt_at = ? + ? * (1 << MAX(failures, 0)) WHERE series_uid = ? AND model_version = ?",
                    (FAILED, reason, _now_iso(), time.time(), float(backoff_s), series_uid, model_version),
                    (series_uid, model_version, FAILED, reason))

    def skip(self, series_uid: str, model_version: str, reason: str) -> None:
        """Mark a series ``skipped`` (final): its full headers do not match the selection rules."""
        self._write("UPDATE series SET state = ?, reason = ?, updated = ?, running = 0 "
                    "WHERE series_uid = ? AND model_version = ?",
                    (SKIPPED, reason, _now_iso(), series_uid, model_version),
                    (series_uid, model_version, SKIPPED, reason))

    def counts(self) -> dict[str, int]:
        """Number of rows per state (every state present, zero if none)."""
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) FROM series GROUP BY state").fetchall()
        return {**dict.fromkeys(STATES, 0), **{r[0]: r[1] for r in rows}}

    def start_run(self) -> int:
        """Open a ``runs`` row; returns its id."""
        with self._lock:
            return int(self._conn.execute("INSERT INTO runs (started) VALUES (?)", (_now_iso(),)).lastrowid)

    def finish_run(self, run_id: int, *, selected: int, stored: int, failed: int, skipped: int, wall_s: float,
                   series_per_hour: float, exit_code: int) -> None:
        """Close a ``runs`` row with the run's summary."""
        with self._lock:
            self._conn.execute(
                "UPDATE runs SET finished = ?, selected = ?, stored = ?, failed = ?, skipped = ?, wall_s = ?, "
                "series_per_hour = ?, exit_code = ? WHERE id = ?",
                (_now_iso(), selected, stored, failed, skipped, wall_s, series_per_hour, exit_code, run_id))
