"""The PACS batch job: C-FIND -> select -> retrieve -> check -> translate -> C-STORE -> record.

One pass (:meth:`PacsBatchJob.run`):

1. take the state-dir lock (one job per state dir), open the journal, count the series whose step a killed job left
   unfinished (:meth:`~drdd_med.pacs.journal.Journal.recover_interrupted`), delete orphan ``*.partial`` work folders
   and the work folders of finished series;
2. C-FIND the series of ``query``; record the ones the rules select (or cannot yet rule out) as ``found``;
3. process every due journal row (new, interrupted, or failed with attempts left and backoff elapsed), at most
   ``max_series_per_run``: a retriever thread fetches series into ``<work>/source.partial``, renames the folder to
   ``source`` once the transfer is over, reads the headers once, checks that the series is complete and consistent,
   re-applies the rules to the full headers and hands it over through a bounded queue; the main thread translates it
   (as the source domain the matching selection names, if any; its reader finds the headers already read;
   ``sct.partial`` renamed to ``sct``), C-STOREs the sCT and marks it
   ``stored``. Pixels are decoded once, by the translator. Retrieval of the next series thus overlaps translation of
   the current one;
4. a series that fails is marked ``failed`` with its reason and the others go on; the summary gives the counts and
   series/hour and the exit code says whether everything succeeded.

Crash safety: a state names the last completed step and is written after the step's output was renamed into place;
a rerun deletes ``*.partial`` folders and starts a series over unless its sCT folder is complete, in which case it
only stores it again (the sCT UIDs are deterministic, so a repeated C-STORE replaces identical instances). A kill is
not a failure: it does not use up ``max_attempts``, and a series that was being worked on when the job died goes to
the back of the next pass's queue, so a series that crashes the job every time cannot hold up the others (after
``max_interruptions`` such crashes it is marked ``failed``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drdd_med.io.dicom_rules import condition_keywords, first_match
from drdd_med.pacs import journal as jr
from drdd_med.pacs.config import PacsConfig
from drdd_med.pacs.scp import PeerFilter, SeriesSink, StorageServer, make_store_handler
from drdd_med.pacs.scu import PacsError, find_series, retrieve_series, store_files
from drdd_med.pacs.series_checks import check_retrieved, check_sct, check_volume
from drdd_med.pacs.translator import Translator, build_translator

__all__ = ["Translator", "build_translator", "PacsBatchJob", "JobSummary", "PlannedSeries", "JobLockedError",
           "EXIT_OK", "EXIT_FAILED_SERIES", "EXIT_PACS_ERROR", "EXIT_LOCKED"]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED_SERIES, EXIT_PACS_ERROR, EXIT_LOCKED = 0, 1, 2, 3
_QUEUE_POLL_S = 0.5


class JobLockedError(RuntimeError):
    """Another job holds the state directory's lock."""


@dataclass(frozen=True)
class PlannedSeries:
    """A series due for processing in this pass (no patient data)."""

    series_uid: str
    study_uid: str
    selection: str | None
    state: str
    attempts: int
    expected_instances: int | None = None


@dataclass
class JobSummary:
    """Outcome of one pass."""

    found: int = 0
    planned: list[PlannedSeries] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0

    @property
    def series_per_hour(self) -> float:
        return 3600.0 * len(self.stored) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return EXIT_PACS_ERROR
        return EXIT_FAILED_SERIES if self.failed else EXIT_OK


@dataclass
class _Ready:
    """A series handed from the retriever to the translator."""

    task: PlannedSeries
    work: Path
    store_only: bool
    retrieve_s: float = 0.0
    selection: str | None = None  # the selection the full headers match


class PacsBatchJob:
    """One configured batch job (see the module docstring).

    Args:
        config: validated config.
        translator: the model; ``None`` builds it with :func:`build_translator` when first needed.

    Example:
        >>> summary = PacsBatchJob(load_config("pacs.json")).run()   # doctest: +SKIP
        >>> summary.exit_code, summary.series_per_hour                # doctest: +SKIP
    """

    def __init__(self, config: PacsConfig, translator: Translator | None = None):
        self.config = config
        self._translator = translator
        self._stop = threading.Event()

    @property
    def translator(self) -> Translator:
        if self._translator is None:
            self._translator = build_translator(self.config)
        return self._translator

    @staticmethod
    def _tag(model_version: str) -> str:
        return hashlib.sha256(model_version.encode()).hexdigest()[:8]

    def work_dir(self, series_uid: str) -> Path:
        """Per-series work folder (series UID + a short hash of the model version)."""
        return self.config.work_dir / f"{series_uid}-{self._tag(self.translator.model_version)}"

    # ------------------------------------------------------------------------------------------------ pass
    def run(self, dry_run: bool = False) -> JobSummary:
        """Run one pass; with ``dry_run`` only query and list what would be processed (nothing is written)."""
        start = time.monotonic()
        summary = JobSummary()
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.config.state_dir / "job.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JobLockedError(f"another pacs-batch job is running on {self.config.state_dir}") from None
            with jr.Journal(self.config.journal_path) as journal:
                run_id = None if dry_run else journal.start_run()
                try:
                    self._pass(journal, summary, dry_run)
                finally:
                    summary.wall_s = time.monotonic() - start
                    if run_id is not None:
                        journal.clear_running()  # this pass ends without a crash: nothing was interrupted
                        journal.finish_run(run_id, selected=len(summary.planned), stored=len(summary.stored),
                                           failed=len(summary.failed), skipped=len(summary.skipped),
                                           wall_s=summary.wall_s, series_per_hour=summary.series_per_hour,
                                           exit_code=summary.exit_code)
        logger.info("pass done: %d planned, %d stored, %d failed, %d skipped in %.1f s (%.1f series/hour)",
                    len(summary.planned), len(summary.stored), len(summary.failed), len(summary.skipped),
                    summary.wall_s, summary.series_per_hour)
        return summary

    def stop(self) -> None:
        """Ask a running pass to finish the current series and stop."""
        self._stop.set()

    def _pass(self, journal: jr.Journal, summary: JobSummary, dry_run: bool) -> None:
        model_version = self.translator.model_version
        if not dry_run:
            for uid in journal.recover_interrupted(self.config.max_interruptions):
                logger.warning("series %s: the previous job stopped while working on it; resuming it last", uid)
            self._remove_orphans(journal, model_version)
        try:
            identifiers = find_series(self.config, condition_keywords(self.config.selections))
        except PacsError as exc:
            summary.error = str(exc)
            logger.error("query failed, nothing processed: %s", exc)
            return
        summary.found = len(identifiers)
        summary.planned = self._plan(journal, identifiers, model_version, dry_run)
        logger.info("%d series found, %d due for processing (model %s)", summary.found, len(summary.planned),
                    model_version)
        if not dry_run and summary.planned:
            self._process(journal, summary, model_version)

    def _plan(self, journal: jr.Journal, identifiers: list[Any], model_version: str,
              dry_run: bool) -> list[PlannedSeries]:
        expected: dict[str, int | None] = {}
        new: list[PlannedSeries] = []
        for ident in identifiers:
            name, verdict = first_match(self.config.selections, ident, partial=True)
            if verdict is False:
                continue
            uid, study = str(ident.SeriesInstanceUID), str(ident.StudyInstanceUID)
            count = str(ident.get("NumberOfSeriesRelatedInstances", "") or "").strip()
            expected[uid] = int(count) if count.isdigit() else None
            if journal.get(uid, model_version) is None:
                if dry_run:
                    new.append(PlannedSeries(uid, study, name, "new", 0, expected[uid]))
                else:
                    journal.add_found(uid, model_version, study_uid=study, selection=name)
        entries = [e for e in journal.entries() if e.model_version == model_version
                   and journal.is_due(e, self.config.max_attempts, max_interruptions=self.config.max_interruptions)]
        entries.sort(key=lambda e: e.interruptions)  # stable: a series that was running when a job died goes last
        due = [PlannedSeries(e.series_uid, e.study_uid, e.selection, e.state, e.attempts, expected.get(e.series_uid))
               for e in entries]
        return (due + new)[: self.config.max_series_per_run]

    def _remove_orphans(self, journal: jr.Journal, model_version: str) -> None:
        """Delete ``*.partial`` folders, and the work folders (of this model version) of series that are finished
        or unknown to the journal: a kill between the journal update and the clean-up leaves them behind."""
        work = self.config.work_dir
        if not work.exists():
            return
        for partial in list(work.glob("*/*.partial")):
            logger.info("removing unfinished work folder %s", partial)
            shutil.rmtree(partial, ignore_errors=True)
        suffix = "-" + self._tag(model_version)
        for folder in list(work.iterdir()):
            if not folder.is_dir() or not folder.name.endswith(suffix):
                continue
            entry = journal.get(folder.name[: -len(suffix)], model_version)
            if entry is None or entry.state == jr.SKIPPED or (entry.state == jr.STORED and not self.config.keep_work):
                logger.info("removing the work folder of a finished series: %s", folder)
                shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------------------------------------- pipeline
    def _process(self, journal: jr.Journal, summary: JobSummary, model_version: str) -> None:
        ready: queue.Queue = queue.Queue(maxsize=self.config.queue_size)
        sink = SeriesSink()
        peers = PeerFilter(self.config.pacs.ae_title, [self.config.pacs.host])
        handler = make_store_handler(sink, peers)
        done = object()

        def retriever() -> None:
            try:
                for task in summary.planned:
                    if self._stop.is_set():
                        break
                    item = self._retrieve(journal, summary, task, model_version, sink, handler)
                    if item is not None:
                        self._put(ready, item)
            finally:
                self._put(ready, done)

        with contextlib.ExitStack() as stack:
            if self.config.retrieve == "move":  # our storage SCP receives the C-MOVE sub-operations
                stack.enter_context(StorageServer(
                    self.config.ae_title, self.config.bind, self.config.port, sink, peers,
                    self.config.acse_timeout_s, self.config.dimse_timeout_s, self.config.network_timeout_s))
            self._run_pipeline(journal, summary, model_version, ready, retriever, done)

    def _run_pipeline(self, journal: jr.Journal, summary: JobSummary, model_version: str, ready: queue.Queue,
                      retriever: Any, done: object) -> None:
        """Retrieve in a thread; translate and store here, as items arrive through the bounded queue."""
        thread = threading.Thread(target=retriever, name="pacs-retriever", daemon=True)
        # After a normal end the retriever has finished; on an exception (Ctrl-C) do not wait for a retrieval.
        join_s = _QUEUE_POLL_S * 10
        try:
            thread.start()
            while True:
                try:
                    item = ready.get(timeout=_QUEUE_POLL_S)
                except queue.Empty:
                    if not thread.is_alive() and ready.empty():
                        break
                    continue
                if item is done:
                    break
                self._translate_and_store(journal, summary, item, model_version)
            join_s = self.config.retrieve_timeout_s + self.config.dimse_timeout_s
        finally:
            self._stop.set()
            thread.join(timeout=join_s)
            self._stop.clear()

    def _put(self, ready: queue.Queue, item: object) -> None:
        """Wait for room in the bounded queue, giving up once a stop was requested."""
        while True:
            try:
                ready.put(item, timeout=_QUEUE_POLL_S)
                return
            except queue.Full:
                if self._stop.is_set():
                    return  # dropped: the row keeps its journal state and is resumed next pass

    def _fail(self, journal: jr.Journal, summary: JobSummary, task: PlannedSeries, model_version: str,
              exc: BaseException, work: Path) -> None:
        reason = str(exc) if isinstance(exc, (PacsError, ValueError)) else f"{type(exc).__name__}: {exc}"
        logger.error("series %s failed: %s", task.series_uid, reason)
        journal.fail(task.series_uid, model_version, reason, self.config.retry_backoff_s)
        summary.failed[task.series_uid] = reason
        if not (work / "sct").is_dir():
            shutil.rmtree(work, ignore_errors=True)

    def _retrieve(self, journal: jr.Journal, summary: JobSummary, task: PlannedSeries, model_version: str,
                  sink: SeriesSink, handler: Any) -> _Ready | None:
        work = self.work_dir(task.series_uid)
        journal.begin_attempt(task.series_uid, model_version)
        entry = journal.get(task.series_uid, model_version)
        if (work / "sct").is_dir() and entry is not None and entry.sct_series_uid:
            logger.info("series %s: sCT already written, storing it again", task.series_uid)
            journal.set_running(task.series_uid, model_version, False)  # waits in the queue until stored
            return _Ready(task, work, store_only=True)
        shutil.rmtree(work, ignore_errors=True)
        partial = work / "source.partial"
        start = time.monotonic()
        sink.expect(task.series_uid, partial)
        try:
            result = retrieve_series(self.config, task.study_uid, task.series_uid, handler)
            received = sink.release(task.series_uid)
            source = work / "source"
            partial.rename(source)  # transfer over; the journal says "retrieved" only once the checks pass
            headers = check_retrieved(source, task.series_uid, received, result, task.expected_instances)
            selection, verdict = first_match(self.config.selections, headers)
            if not verdict:
                reason = "full headers do not match any selection rule"
                logger.info("series %s skipped: %s", task.series_uid, reason)
                journal.skip(task.series_uid, model_version, reason)
                summary.skipped[task.series_uid] = reason
                shutil.rmtree(work, ignore_errors=True)
                return None
            check_volume(headers, task.series_uid)
        except Exception as exc:  # one series' failure must not stop the others
            sink.release(task.series_uid)
            self._fail(journal, summary, task, model_version, exc, work)
            return None
        elapsed = time.monotonic() - start
        journal.advance(task.series_uid, model_version, jr.RETRIEVED, source_instances=received, retrieve_s=elapsed)
        logger.info("series %s: retrieved %d instances in %.1f s", task.series_uid, received, elapsed)
        return _Ready(task, work, store_only=False, retrieve_s=elapsed, selection=selection)

    def _translate_and_store(self, journal: jr.Journal, summary: JobSummary, item: _Ready, model_version: str) -> None:
        task, work = item.task, item.work
        journal.set_running(task.series_uid, model_version)
        try:
            if not item.store_only:
                start = time.monotonic()
                partial = work / "sct.partial"
                shutil.rmtree(partial, ignore_errors=True)
                domain = self.config.selection_domains.get(item.selection or "")
                options = {"domain": domain} if domain else {}  # translators without domains are called as before
                written = self.translator.translate_series(work / "source", partial, **options)
                sct_uid = check_sct(written, partial, task.study_uid)
                partial.rename(work / "sct")
                journal.advance(task.series_uid, model_version, jr.TRANSLATED, sct_series_uid=sct_uid,
                                sct_instances=len(written), translate_s=time.monotonic() - start)
                logger.info("series %s: translated into %d sCT instances (series %s) in %.1f s",
                            task.series_uid, len(written), sct_uid, time.monotonic() - start)
            files = sorted((work / "sct").glob("*.dcm"))
            start = time.monotonic()
            stored = store_files(self.config, self.config.store_peer, files)
            journal.advance(task.series_uid, model_version, jr.STORED, store_s=time.monotonic() - start)
            logger.info("series %s: stored %d sCT instances to %s", task.series_uid, stored, self.config.store_peer)
        except Exception as exc:
            self._fail(journal, summary, task, model_version, exc, work)
            return
        summary.stored.append(task.series_uid)
        if not self.config.keep_work:
            shutil.rmtree(work, ignore_errors=True)
