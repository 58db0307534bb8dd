"""The PACS batch job under repeated crashes, and what its log shows, against a real Orthanc on 127.0.0.1.

* ``benchmarks/pacs_chaos.py`` in a short, seeded configuration: passes SIGKILLed at random moments, Orthanc
  crashed and restarted, then one sCT series per selected MR series, complete, and nothing left behind.
* One pass of ``drdd-med pacs-batch`` at DEBUG on series whose patient name, ID and (malformed) birth date are
  distinctive strings: none of them, and no third-party decoder warning, reaches the log or the journal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pacs_servers import c_store, job_config, phantom_archive

pytestmark = [pytest.mark.pacs, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHAOS = REPO / "benchmarks" / "pacs_chaos.py"
#: Lines written by third-party decoders: their loggers or the warnings module.
THIRD_PARTY = re.compile(r"^(?:\S+ \S+ )?(?:DEBUG|INFO|WARNING|ERROR) (?:pydicom|gdcm|pynetdicom\.dsutils)[.:]"
                         r"|\.py:\d+: \w*Warning\b|warn_and_log|GDCM")


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


@pytest.mark.timeout(150)
def test_seeded_chaos_runs_store_each_series_exactly_once(tmp_path):
    out = tmp_path / "chaos.json"
    cmd = [sys.executable, str(CHAOS), "--runs", "2", "--seed", "1", "--series", "2", "--translator", "linear",
           "--launcher", "fork", "--max-kills", "3", "--max-restarts", "1", "--restart-p", "1.0", "--delay-s", "1.0",
           "--out", str(out),
           "--work", str(tmp_path / "work")]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=140)
    print(proc.stdout[-3000:], f"chaos: {time.monotonic() - start:.1f} s", sep="\n")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())["summary"]
    assert summary["runs"] == summary["completed"] == 2
    # every pass plans an Orthanc crash and each series takes 1 s, so crashes land while passes run, whatever the speed
    assert summary["kills"] >= 2 and summary["orthanc_restarts"] >= 1
    for key in ("duplicates", "missing_series", "missing_instances", "extra_instances", "unexpected_sct", "orphans",
                "not_stored", "not_idempotent", "third_party_log_lines", "identifier_leaks"):
        assert summary[key] == 0, (key, summary)


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")  # the upload's own, in this process
def test_the_job_log_holds_no_patient_identifiers_and_no_decoder_warnings(orthanc, tmp_path):
    secrets = {"patient_name": "Zanzibar^Quetzalcoatl", "patient": "PIDX93517", "birth_date": "DOB1923X0817"}
    selected, others = phantom_archive(num_patients=2, localizers=True, identity=lambda i: {
        k: f"{v}{i}" for k, v in secrets.items()})
    gap_uid, gap = list(selected.items())[1]
    del gap[len(gap) // 2]  # this series fails its check: the failure path is logged too
    c_store(orthanc.dicom_port, orthanc.aet, [ds for s in selected.values() for ds in s] + others)
    state = tmp_path / "state"
    raw = job_config(state, orthanc.dicom_port, orthanc.aet, orthanc.scp_port, "move", max_attempts=1)
    config = tmp_path / "pacs.json"
    config.write_text(json.dumps(raw))

    cmd = [sys.executable, "-m", "drdd_med.cli.main", "-v", "pacs-batch", "--once", "--config", str(config),
           "--log-level", "DEBUG"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=100)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]  # one series stored, the one with a gap failed
    assert "1 stored, 1 failed" in log and f"series {gap_uid} failed" in log
    assert "withheld" in log and "third-party decoder warning" in log  # the malformed birth dates made some
    assert [line for line in log.splitlines() if THIRD_PARTY.search(line)] == []
    journal = (state / "journal.sqlite").read_bytes()
    for i in range(2):
        for value in secrets.values():
            assert f"{value}{i}" not in log, f"{value}{i} in the log"
            assert f"{value}{i}".encode() not in journal, f"{value}{i} in the journal"
