"""SQLite journal of the PACS batch job: one row per (source series, model version), plus an event log.

States, in order: ``found`` (selected from C-FIND) -> ``retrieved`` (complete series on disk) -> ``translated``
(sCT series written) -> ``stored`` (every sCT instance accepted by the destination). ``failed`` carries a reason and
is retried (``attempts`` < ``max_attempts``) once its exponential backoff has elapsed; ``skipped`` means the full
headers did not match the selection rules (final). A state always names the last step that *completed*, so a row left
in ``retrieved``/``translated`` by a killed run is simply resumed. Every write is one SQLite transaction, so a kill -9
leaves either the old or the new row, never half of one.

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
           "first_seen", "updated")
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

    def is_due(self, entry: JournalEntry, max_attempts: int, now: float | None = None) -> bool:
        """Whether a row should be (re)processed now: not final, attempts left, backoff elapsed."""
        now = time.time() if now is None else now
        return entry.state not in _FINAL and entry.attempts < max_attempts and entry.next_attempt_at <= now

    def begin_attempt(self, series_uid: str, model_version: str) -> None:
        """Count one more attempt (before any work, so a series that crashes the job cannot loop forever)."""
        self._write("UPDATE series SET attempts = attempts + 1, updated = ? WHERE series_uid = ? AND model_version = ?",
                    (_now_iso(), series_uid, model_version), (series_uid, model_version, "attempt", None))

    def advance(self, series_uid: str, model_version: str, state: str, **fields: object) -> None:
        """Record a completed step (``retrieved``/``translated``/``stored``) with its counts and timings."""
        if state not in (FOUND, RETRIEVED, TRANSLATED, STORED):
            raise ValueError(f"advance(): state must be found/retrieved/translated/stored, got {state!r}")
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"advance(): unknown field(s) {sorted(unknown)}; allowed {sorted(_UPDATABLE)}")
        sets = "".join(f", {k} = ?" for k in fields)
        self._write(f"UPDATE series SET state = ?, reason = NULL, updated = ?{sets} "
                    "WHERE series_uid = ? AND model_version = ?",
                    (state, _now_iso(), *fields.values(), series_uid, model_version),
                    (series_uid, model_version, state, ", ".join(f"{k}={v}" for k, v in fields.items()) or None))

    def fail(self, series_uid: str, model_version: str, reason: str, backoff_s: float) -> None:
        """Mark a series ``failed``; the next attempt waits ``backoff_s * 2**(attempts - 1)`` seconds."""
        self._write("UPDATE series SET state = ?, reason = ?, updated = ?, "
                    "next_attempt_at = ? + ? * (1 << MAX(attempts - 1, 0)) WHERE series_uid = ? AND model_version = ?",
                    (FAILED, reason, _now_iso(), time.time(), float(backoff_s), series_uid, model_version),
                    (series_uid, model_version, FAILED, reason))

    def skip(self, series_uid: str, model_version: str, reason: str) -> None:
        """Mark a series ``skipped`` (final): its full headers do not match the selection rules."""
        self._write("UPDATE series SET state = ?, reason = ?, updated = ? WHERE series_uid = ? AND model_version = ?",
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
