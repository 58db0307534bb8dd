"""Chaos benchmark of the PACS batch job: is ``drdd-med pacs-batch --once`` crash-safe and idempotent?

Each seeded chaos run starts its own Orthanc on 127.0.0.1 and uploads N phantom MR series (one study per patient,
each with a localizer; the first patient also has a T2, a scout and a CT). It then runs the job again and again, as
cron would. A pass may be SIGKILLed at a random moment, and Orthanc may be SIGKILLed and restarted on the same
storage at another random moment. This goes on until a pass that nobody interrupted exits with code 0. Then:

- Orthanc must hold exactly one sCT series per selected MR series, with as many instances as the MR has slices,
  and no sCT for the localizers, the T2, the scout or the CT;
- the journal must say ``stored`` for every selected series, and no work folder may be left;
- one more pass must find nothing to do;
- the job's logs must hold no third-party decoder warnings and none of the patients' names, IDs or birth dates.

Usage (from the repository root; Orthanc at /usr/sbin/Orthanc)::

    python benchmarks/pacs_chaos.py --runs 20 [--seed S] [--series N] [--translator linear|bundle|mixed]

It prints one line per run and a summary table, and writes ``benchmarks/results/pacs_chaos.json``. The exit code
is 0 when no run found a problem. The linear stand-in translator (``tests/integration/pacs_translator.py``, on the
job's PYTHONPATH) makes the PACS traffic dominate. ``--translator bundle`` (or ``mixed``: runs 1, 11, 21, ...)
uses the real bundle translator with a seeded tiny DRDD network. ``--launcher fork`` starts each pass by forking a
process that has imported the job once; this saves the ~5 s interpreter start of ``exec`` (the real ``drdd-med``
console script) and is what the CI test uses.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import random
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STAND_IN_DIR = REPO / "tests" / "integration"  # holds pacs_translator.py, the linear stand-in translator
DEFAULT_OUT = REPO / "benchmarks" / "results" / "pacs_chaos.json"
DEFAULT_WORK = REPO / "benchmarks" / "_work" / "pacs_chaos"
LOOPBACK = "127.0.0.1"
SYNTHETIC = "Synthetic CT"
_POLL_S = 0.01
#: Log lines that third-party libraries write (warnings module, their loggers); the job must keep them out.
_THIRD_PARTY = re.compile(
    r"^(?:\S+ \S+ )?(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"(?:pydicom|gdcm|pynetdicom\.dsutils|monai\.data\.nvimgcodec\w*)[.:]"
    r"|\.py:\d+: \w*Warning\b|warn_and_log|GDCM")
_SUMMARY = re.compile(r"pacs-batch: (\d+) due, (\d+) stored, (\d+) failed, (\d+) skipped")


# ------------------------------------------------------------------------------------------------- job launchers
class _ExecJob:
    """A pass run as its own process (``drdd-med pacs-batch ...``)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.pid = proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)


class ExecLauncher:
    """Start every pass with the ``drdd-med`` console script, as cron does."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        script = shutil.which("drdd-med")
        self.command = [script] if script else [sys.executable, "-m", "drdd_med.cli.main"]

    def start(self, argv: list[str], log: Path) -> _ExecJob:
        with open(log, "ab") as out:
            proc = subprocess.Popen([*self.command, *argv], cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        return _ExecJob(proc)

    def close(self) -> None:
        """Nothing to stop: every pass is waited for by the caller."""


class _ForkJob:
    """A pass forked by the zygote; it is killed and reaped by the zygote, its parent, so no PID is ever reused."""

    def __init__(self, launcher: "ForkLauncher", pid: int):
        self.launcher, self.pid = launcher, pid

    def poll(self) -> int | None:
        return self.launcher.exit_code(self.pid)

    def kill(self) -> None:
        self.launcher.send({"op": "kill", "pid": self.pid})

    def wait(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rc = self.poll()
            if rc is not None:
                return rc
            time.sleep(_POLL_S)
        raise TimeoutError(f"forked pass {self.pid} still running after {timeout_s:g} s")


class ForkLauncher:
    """Start every pass by forking a zygote process that imported the job's modules once (``--zygote``)."""

    def __init__(self, env: dict[str, str], bundle: bool = False):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--zygote", "--translator",
               "bundle" if bundle else "linear"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        self._lock = threading.Condition()
        self._exits: dict[int, int] = {}
        self._pids: list[int] = []
        self._ready = False
        self._reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)
        self._reader.start()

    def _wait_ready(self, timeout_s: float = 180.0) -> None:
        """The zygote imports while the first run starts Orthanc and uploads; wait for it before the first pass."""
        with self._lock:
            if not self._lock.wait_for(lambda: self._ready or self.proc.poll() is not None, timeout=timeout_s):
                raise RuntimeError(f"zygote not ready after {timeout_s:g} s")
        if not self._ready:
            raise RuntimeError(f"zygote exited with {self.proc.returncode}")

    def _read(self) -> None:
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._lock:
                if "ready" in msg:
                    self._ready = True
                elif "pid" in msg:
                    self._pids.append(int(msg["pid"]))
                elif "exit" in msg:
                    self._exits[int(msg["exit"])] = int(msg["rc"])
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def send(self, msg: dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def exit_code(self, pid: int) -> int | None:
        with self._lock:
            return self._exits.get(pid)

    def start(self, argv: list[str], log: Path, timeout_s: float = 30.0) -> _ForkJob:
        self._wait_ready()
        with self._lock:
            self._pids.clear()
        self.send({"op": "run", "argv": argv, "log": str(log)})
        with self._lock:
            if not self._lock.wait_for(lambda: self._pids, timeout=timeout_s):
                raise RuntimeError(f"zygote did not fork within {timeout_s:g} s")
            return _ForkJob(self, self._pids.pop())

    def close(self) -> None:
        try:
            self.send({"op": "quit"})
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait(timeout=10)


def _zygote(bundle: bool) -> None:
    """``--zygote``: import the job once, then fork one pass per request; kill and reap only our own children."""
    import drdd_med.cli.main
    import drdd_med.cli.pacs_batch  # noqa: F401
    import drdd_med.pacs.job  # noqa: F401
    import drdd_med.pacs.scp  # noqa: F401
    import drdd_med.pacs.scu  # noqa: F401
    import pynetdicom  # noqa: F401

    for module in ("pacs_translator", *(("drdd_med.workflows.predictor",) if bundle else ())):
        __import__(module)
    running: set[int] = set()
    stdin, buffer = sys.stdin.fileno(), b""

    def reply(msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    def child(argv: list[str], log: str) -> None:
        rc = 1
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            sys.argv = ["drdd-med", *argv]
            rc = int(drdd_med.cli.main.main(argv) or 0)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)

    reply({"ready": True})
    while True:
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            running.discard(pid)
            reply({"exit": pid, "rc": os.waitstatus_to_exitcode(status)})
        readable, _, _ = select.select([stdin], [], [], 0.02)
        if not readable:
            continue
        data = os.read(stdin, 65536)
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            msg = json.loads(line)
            if msg["op"] == "run":
                pid = os.fork()
                if pid == 0:
                    child(msg["argv"], msg["log"])
                running.add(pid)
                reply({"pid": pid})
            elif msg["op"] == "kill" and msg["pid"] in running:
                os.kill(msg["pid"], signal.SIGKILL)
            elif msg["op"] == "quit":
                data = b""
        if not data:  # quit or the controller went away: stop our own children, then exit
            for pid in running:
                os.kill(pid, signal.SIGKILL)
            for pid in running:
                os.waitpid(pid, 0)
            sys.stdout.flush()
            os._exit(0)  # skip tearing down torch & co.: nothing is left to flush


# ------------------------------------------------------------------------------------------------- observations
def _journal(state_dir: Path) -> dict[str, Any]:
    """Read-only look at the job's journal: rows, run count, last event id and mean step time of stored rows."""
    path = state_dir / "journal.sqlite"
    empty = {"rows": {}, "runs": 0, "last_event": 0, "last_state": None, "step_s": None}
    if not path.exists():
        return empty
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            rows = {r[0]: r[1] for r in con.execute("SELECT series_uid, state FROM series")}
            runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            last = con.execute("SELECT id, state FROM events ORDER BY id DESC LIMIT 1").fetchone()
            step = con.execute("SELECT AVG(COALESCE(retrieve_s, 0) + COALESCE(translate_s, 0) + "
                               "COALESCE(store_s, 0)) FROM series WHERE state = 'stored'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet, or a hot journal only the job may roll back
        return empty
    return {"rows": rows, "runs": runs, "last_event": last[0] if last else 0, "last_state": last[1] if last else None,
            "step_s": step}


def _sct_series(orthanc: Any) -> list[dict[str, Any]]:
    """Every sCT series in Orthanc, with its source series (read from one instance) and instance count."""
    import pydicom

    found = []
    for series in orthanc.find_series({"Modality": "CT"}):
        if SYNTHETIC not in series["MainDicomTags"].get("SeriesDescription", ""):
            continue
        first = pydicom.dcmread(io.BytesIO(orthanc.instance_file(series["Instances"][0])), stop_before_pixels=True)
        found.append({"series_uid": series["MainDicomTags"]["SeriesInstanceUID"], "instances": len(series["Instances"]),
                      "source": str(first.ReferencedSeriesSequence[0].SeriesInstanceUID)})
    return found


def _scan_logs(logs: list[Path], identifiers: list[str]) -> dict[str, Any]:
    """Third-party warning lines and patient identifiers in the passes' logs (every level down to DEBUG)."""
    third, leaks, samples = 0, 0, []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            if _THIRD_PARTY.search(line):
                third += 1
                samples.append(line[:200])
            if any(ident in line for ident in identifiers):
                leaks += 1
                samples.append("identifier: " + line[:200])
    return {"third_party_lines": third, "identifier_leaks": leaks, "samples": samples[:5]}


# ------------------------------------------------------------------------------------------------- one chaos run
@dataclass
class Scenario:
    """What one chaos run does: translator, retrieval mode and the chaos probabilities."""

    index: int
    seed: str
    translator: str
    retrieve: str
    series: int
    kill_p: float
    restart_p: float
    max_kills: int
    max_restarts: int


@dataclass
class PassRecord:
    """One pass of the job in a chaos run."""

    index: int
    rc: int | None
    killed_at_s: float | None = None
    kill_after: str | None = None  # the journal's last event when the kill came (the step that was running)
    orthanc_restart_at_s: float | None = None
    wall_s: float = 0.0
    hung: bool = False


@dataclass
class RunResult:
    """Outcome and counts of one chaos run."""

    scenario: dict[str, Any]
    passes: list[PassRecord] = field(default_factory=list)
    completed: bool = False
    kills: int = 0
    orthanc_restarts: int = 0
    selected: int = 0
    sct_series: int = 0
    duplicates: int = 0
    missing_series: int = 0
    missing_instances: int = 0
    extra_instances: int = 0
    unexpected_sct: int = 0
    orphans: list[str] = field(default_factory=list)
    not_stored: dict[str, str] = field(default_factory=dict)
    idempotent: bool | None = None
    logs: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    error: str | None = None

    @property
    def problems(self) -> list[str]:
        found = [name for name, value in (
            ("never completed", not self.completed), ("duplicates", self.duplicates),
            ("missing series", self.missing_series), ("missing instances", self.missing_instances),
            ("extra instances", self.extra_instances), ("unexpected sCT", self.unexpected_sct),
            ("orphans", self.orphans), ("not stored", self.not_stored), ("not idempotent", self.idempotent is False),
            ("hung pass", any(p.hung for p in self.passes)), ("error", self.error),
            ("third-party log lines", self.logs.get("third_party_lines")),
            ("identifier leaks", self.logs.get("identifier_leaks"))) if value]
        return found


def _identity(run: int) -> Any:
    """Distinctive patient names, IDs and (not valid as DA, like much hospital data) birth dates to look for in logs."""
    return lambda i: {"patient": f"CHAOSPID{run:03d}N{i}", "patient_name": f"Quixote^Chaos{run:03d}N{i}",
                      "birth_date": f"DOB{run:03d}N{i}"}


def _job_config(sc: Scenario, root: Path, orthanc: Any, scp_port: int, bundle: Path | None,
                delay_s: float) -> dict[str, Any]:
    from drdd_med.pacs.testing import job_config

    if sc.translator == "bundle":
        from drdd_med.pacs.translator import INFERENCE_KEYS

        inference = {"device": "cpu", "residual_steps": 2, "noise_steps": 2}
        if "threads" in INFERENCE_KEYS:
            inference["threads"] = 1
        extra = {"bundle": str(bundle), "translator": None, "inference": inference}
    else:
        extra = {"inference": {"delay_s": delay_s}}
    # Orthanc restarts fail at most one attempt of a series per restart; kills are interruptions, not failures,
    # and the poison-pill limit on interruptions sits above the number of kills (it is tested in tests/pacs).
    return job_config(root / "state", orthanc.dicom_port, orthanc.aet, scp_port if sc.retrieve == "move" else 0,
                      sc.retrieve, max_attempts=sc.max_restarts + 1, max_interruptions=sc.max_kills + 1,
                      retrieve_timeout_s=30, **extra)


def _run_pass(launcher: Any, argv: list[str], log: Path, state: Path, orthanc: Any, rng: random.Random,
              window_s: float, kill: bool, restart: bool, timeout_s: float, index: int) -> PassRecord:
    """One pass: start, wait for it to open its run in the journal, then kill it and/or crash Orthanc on time."""
    kill_at = rng.uniform(0.0, window_s) if kill else None
    restart_at = rng.uniform(0.0, window_s) if restart else None
    downtime_s = rng.uniform(0.0, 1.0)
    runs_before = _journal(state)["runs"]
    begin = time.monotonic()
    job = launcher.start(argv, log)
    record = PassRecord(index, None)
    deadline = begin + timeout_s
    while job.poll() is None and _journal(state)["runs"] <= runs_before and time.monotonic() < deadline:
        time.sleep(_POLL_S)  # the kill clock starts when the job has the lock and has started its run
    t0 = time.monotonic()
    while job.poll() is None:
        now = time.monotonic() - t0
        if kill_at is not None and record.killed_at_s is None and now >= kill_at:
            job.kill()
            record.killed_at_s = round(now, 3)
            record.kill_after = _journal(state)["last_state"]
            break
        if restart_at is not None and record.orthanc_restart_at_s is None and now >= restart_at:
            orthanc.stop(kill=True)
            time.sleep(downtime_s)
            orthanc.start()
            record.orthanc_restart_at_s = round(now, 3)
        if time.monotonic() > deadline:
            job.kill()
            record.hung = True
            break
        time.sleep(_POLL_S)
    record.rc = job.wait(60)
    if record.killed_at_s is not None and record.rc != -signal.SIGKILL:  # it had exited just before the kill
        record.killed_at_s = record.kill_after = None
    record.wall_s = round(time.monotonic() - begin, 2)
    return record


def chaos_run(sc: Scenario, args: argparse.Namespace, launcher: Any, bundle: Path | None) -> RunResult:
    """One seeded chaos run against a fresh Orthanc (see the module docstring)."""
    from drdd_med.pacs.testing import OrthancServer, c_store, free_port, phantom_archive

    rng = random.Random(sc.seed)
    result = RunResult(scenario=vars(sc).copy())
    root = Path(args.work) / f"run{sc.index:03d}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    start = time.monotonic()
    scp_port = free_port()
    orthanc = OrthancServer(root / "orthanc", {"DRDD": (LOOPBACK, scp_port)})
    try:
        orthanc.start()
        identity = _identity(sc.index)
        selected, others = phantom_archive(sc.series, extras=True, localizers=True, identity=identity)
        c_store(orthanc.dicom_port, orthanc.aet, [ds for s in selected.values() for ds in s] + others)
        result.selected = len(selected)
        raw = _job_config(sc, root, orthanc, scp_port, bundle, args.delay_s)
        config_path = root / "pacs.json"
        config_path.write_text(json.dumps(raw, indent=1))
        state = root / "state"
        argv = ["pacs-batch", "--once", "--config", str(config_path), "--log-level", "DEBUG"]
        per_series = 1.5 if sc.translator == "bundle" else 0.6 + args.delay_s  # refined from the journal's timings
        run_deadline = start + args.run_timeout_s
        logs: list[Path] = []
        while len(result.passes) < args.max_passes and time.monotonic() < run_deadline:
            seen = _journal(state)
            remaining = max(1, sum(1 for uid in selected if seen["rows"].get(uid) != "stored"))
            per_series = seen["step_s"] or per_series
            # every run is killed at least once (unless a pass beats its kill), then with probability kill_p
            kill = result.kills < sc.max_kills and (result.kills == 0 or rng.random() < sc.kill_p)
            restart = result.orthanc_restarts < sc.max_restarts and rng.random() < sc.restart_p
            log = root / f"pass{len(result.passes):02d}.log"
            logs.append(log)
            record = _run_pass(launcher, argv, log, state, orthanc, rng, 0.5 + per_series * remaining, kill,
                               restart, min(args.pass_timeout_s, max(1.0, run_deadline - time.monotonic())),
                               len(result.passes))
            result.passes.append(record)
            result.kills += record.killed_at_s is not None and not record.hung
            result.orthanc_restarts += record.orthanc_restart_at_s is not None
            if record.hung:
                break
            if record.killed_at_s is None and record.orthanc_restart_at_s is None and record.rc == 0:
                result.completed = True
                break
        if result.completed:  # idempotency: one more, undisturbed pass must find nothing to do
            log = root / "pass_again.log"
            logs.append(log)
            again = _run_pass(launcher, argv, log, state, orthanc, rng, 1.0, False, False, args.pass_timeout_s,
                              len(result.passes))
            summary = _SUMMARY.search(log.read_text(errors="replace"))
            result.idempotent = again.rc == 0 and summary is not None and summary.group(1) == "0"
        _count(result, selected, orthanc, state)
        result.logs = _scan_logs(logs, [v for i in range(sc.series) for v in identity(i).values()])
    except Exception as exc:  # a broken run is reported, the benchmark goes on
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        orthanc.stop(kill=True)
    result.wall_s = round(time.monotonic() - start, 1)
    if not result.problems and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return result


def _count(result: RunResult, selected: dict[str, list], orthanc: Any, state: Path) -> None:
    """sCT series and instances in Orthanc per selected MR series, orphan work folders and journal states."""
    scts = _sct_series(orthanc)
    result.sct_series = len(scts)
    for uid, mr in selected.items():
        mine = [s for s in scts if s["source"] == uid]
        result.missing_series += not mine
        result.duplicates += max(0, len({s["series_uid"] for s in mine}) - 1)
        for s in mine:
            result.missing_instances += max(0, len(mr) - s["instances"])
            result.extra_instances += max(0, s["instances"] - len(mr))
    result.unexpected_sct = sum(1 for s in scts if s["source"] not in selected)
    work = state / "work"
    result.orphans = sorted(p.name for p in work.iterdir()) if work.exists() else []
    rows = _journal(state)["rows"]
    result.not_stored = {uid: rows.get(uid, "absent") for uid in selected if rows.get(uid) != "stored"}
    result.not_stored.update({uid: st for uid, st in rows.items() if uid not in selected and st == "stored"})


# ------------------------------------------------------------------------------------------------- report
_COLUMNS = ("runs", "completed", "passes", "kills", "orthanc_restarts", "duplicates", "missing_series",
            "missing_instances", "extra_instances", "unexpected_sct", "orphans", "not_stored", "not_idempotent",
            "third_party_log_lines", "identifier_leaks")


def _summary(results: list[RunResult], wall_s: float) -> dict[str, Any]:
    total = {
        "runs": len(results), "completed": sum(r.completed for r in results),
        "passes": sum(len(r.passes) for r in results), "kills": sum(r.kills for r in results),
        "orthanc_restarts": sum(r.orthanc_restarts for r in results),
        "duplicates": sum(r.duplicates for r in results), "missing_series": sum(r.missing_series for r in results),
        "missing_instances": sum(r.missing_instances for r in results),
        "extra_instances": sum(r.extra_instances for r in results),
        "unexpected_sct": sum(r.unexpected_sct for r in results),
        "orphans": sum(len(r.orphans) for r in results), "not_stored": sum(len(r.not_stored) for r in results),
        "not_idempotent": sum(r.idempotent is False for r in results),
        "third_party_log_lines": sum(r.logs.get("third_party_lines", 0) for r in results),
        "identifier_leaks": sum(r.logs.get("identifier_leaks", 0) for r in results),
        "runs_with_problems": sum(bool(r.problems) for r in results), "wall_s": round(wall_s, 1),
    }
    kill_after: dict[str, int] = {}
    for r in results:
        for p in r.passes:
            if p.killed_at_s is not None:
                key = p.kill_after or "before the first event"
                kill_after[key] = kill_after.get(key, 0) + 1
    total["kills_by_last_journal_event"] = dict(sorted(kill_after.items()))
    return total


def _line(r: RunResult) -> str:
    sc = r.scenario
    rcs = ",".join("hung" if p.hung else str(p.rc) for p in r.passes)
    verdict = "ok" if not r.problems else "PROBLEMS: " + ", ".join(r.problems)
    return (f"run {sc['index']:3d}  {sc['translator']:<6} {sc['retrieve']:<4}  passes {len(r.passes):2d} "
            f"kills {r.kills} restarts {r.orthanc_restarts}  rc [{rcs}]  sCT {r.sct_series}/{r.selected} "
            f"dup {r.duplicates} miss {r.missing_series}/{r.missing_instances}  orphans {len(r.orphans)}  "
            f"{r.wall_s:6.1f} s  {verdict}")


def _table(total: dict[str, Any]) -> str:
    head = "| " + " | ".join(_COLUMNS) + " | wall (s) |"
    rule = "|" + "---|" * (len(_COLUMNS) + 1)
    row = "| " + " | ".join(str(total[c]) for c in _COLUMNS) + f" | {total['wall_s']} |"
    return "\n".join((head, rule, row))


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.splitlines()[0] if out else ""


def _make_bundle(work: Path) -> Path:
    """A seeded, untrained tiny DRDD bundle (what the PACS bundle test uses): real inference, seconds per volume."""
    import torch

    from drdd_med.workflows.model_config import ModelConfig, save_model

    root = work / "bundle"
    shutil.rmtree(root, ignore_errors=True)
    torch.manual_seed(0)
    config = ModelConfig(preset="tiny", model_version="drdd-chaos-1")
    save_model(config.build_network(), config, root)
    return root


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    plan = random.Random(f"plan:{args.seed}")
    scenarios = []
    for i in range(args.runs):
        translator = args.translator if args.translator != "mixed" else ("bundle" if i % 10 == 1 else "linear")
        scenarios.append(Scenario(i, f"{args.seed}:{i}", translator, plan.choice(("move", "get")), args.series,
                                  args.kill_p, args.restart_p, args.max_kills, args.max_restarts))
    return scenarios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="chaos runs (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--series", type=int, default=3, help="selected MR series per run (default 3)")
    parser.add_argument("--translator", choices=("linear", "bundle", "mixed"), default="mixed",
                        help="linear stand-in, the tiny bundle, or mixed: the bundle in runs 1, 11, 21, ...")
    parser.add_argument("--launcher", choices=("exec", "fork"), default="exec")
    parser.add_argument("--kill-p", type=float, default=0.75,
                        help="chance that a pass after the first kill is SIGKILLed too")
    parser.add_argument("--max-kills", type=int, default=5, help="kills per run at most")
    parser.add_argument("--restart-p", type=float, default=0.3, help="chance that Orthanc crashes during a pass")
    parser.add_argument("--max-restarts", type=int, default=2, help="Orthanc restarts per run at most")
    parser.add_argument("--delay-s", type=float, default=0.2, help="stand-in translator's time per series")
    parser.add_argument("--max-passes", type=int, default=20, help="passes per run before it counts as stuck")
    parser.add_argument("--pass-timeout-s", type=float, default=240.0, help="a pass running longer is 'hung'")
    parser.add_argument("--run-timeout-s", type=float, default=900.0)
    parser.add_argument("--timeout-s", type=float, default=7200.0, help="start no new run after this")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results")
    parser.add_argument("--work", default=str(DEFAULT_WORK), help="per-run folders (kept when a run has problems)")
    parser.add_argument("--keep", action="store_true", help="keep every run's folder")
    parser.add_argument("--zygote", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.zygote:
        _zygote(args.translator != "linear")  # does not return
        return 0

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    # The fixtures' birth dates are not valid DA values on purpose; uploading them is not what is measured.
    warnings.filterwarnings("ignore", message="Invalid value for VR", category=UserWarning)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(STAND_IN_DIR), str(REPO), os.environ.get("PYTHONPATH", ""))
                                        if p)
    scenarios = _scenarios(args)
    load_before, uptime_before = os.getloadavg(), _first_line(["uptime"])
    bundle = _make_bundle(work) if any(s.translator == "bundle" for s in scenarios) else None
    start = time.monotonic()
    launcher = ForkLauncher(env, bundle is not None) if args.launcher == "fork" else ExecLauncher(env)
    results: list[RunResult] = []
    try:
        for sc in scenarios:
            if time.monotonic() - start > args.timeout_s:
                print(f"time limit of {args.timeout_s:g} s reached; {len(scenarios) - len(results)} runs not started")
                break
            results.append(chaos_run(sc, args, launcher, bundle))
            print(_line(results[-1]), flush=True)
    finally:
        launcher.close()
    total = _summary(results, time.monotonic() - start)
    print()
    print(_table(total))
    print(f"kills by the journal's last event: {total['kills_by_last_journal_event']}")
    import pydicom
    import pynetdicom

    from drdd_med.pacs.testing import ORTHANC_BIN

    meta = {
        "command": " ".join(["python", "benchmarks/pacs_chaos.py", *(argv if argv is not None else sys.argv[1:])]),
        "seed": args.seed, "series": args.series, "translator": args.translator, "launcher": args.launcher,
        "kill_p": args.kill_p, "max_kills": args.max_kills, "restart_p": args.restart_p,
        "max_restarts": args.max_restarts, "delay_s": args.delay_s,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in os.getloadavg()],
                    "uptime_before": uptime_before, "uptime_after": _first_line(["uptime"])},
        "versions": {"orthanc": _first_line([ORTHANC_BIN, "--version"]), "pydicom": pydicom.__version__,
                     "pynetdicom": pynetdicom.__version__},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "summary": total,
               "runs": [{**{k: v for k, v in vars(r).items() if k != "passes"}, "problems": r.problems,
                         "passes": [vars(p) for p in r.passes]} for r in results]}
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if results and total["runs_with_problems"] == 0 and len(results) == len(scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())
