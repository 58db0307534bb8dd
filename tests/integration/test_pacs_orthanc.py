"""The PACS batch job against a real Orthanc on 127.0.0.1: happy path (C-MOVE and C-GET), kill -9 and rerun,
PACS outage mid-job, corrupt and incomplete series."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pacs_servers import c_store, job_config, phantom_archive
from pacs_translator import MODEL_VERSION, LinearTranslator

from drdd_med.pacs.config import parse_config
from drdd_med.pacs.journal import Journal
from drdd_med.pacs.job import EXIT_FAILED_SERIES, EXIT_OK, EXIT_PACS_ERROR, PacsBatchJob

pytestmark = [pytest.mark.pacs, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC = "Synthetic CT"


def _config(orthanc, state_dir: Path, retrieve: str = "move", **overrides):
    raw = job_config(state_dir, orthanc.dicom_port, orthanc.aet, orthanc.scp_port, retrieve, **overrides)
    return raw, parse_config(raw)


def _hu(ds) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _sct_series(orthanc, study_uid: str) -> list[dict]:
    found = orthanc.find_series({"StudyInstanceUID": study_uid, "Modality": "CT"})
    return [s for s in found if SYNTHETIC in s["MainDicomTags"].get("SeriesDescription", "")]


def _direct_translation(datasets, tmp: Path) -> dict[str, np.ndarray]:
    """Translate the uploaded MR series directly (no PACS): SOPInstanceUID -> HU slice."""
    src, out = tmp / "src", tmp / "out"
    src.mkdir(parents=True)
    for ds in datasets:
        ds.save_as(src / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    files = LinearTranslator().translate_series(src, out)
    return {str(d.SOPInstanceUID): _hu(d) for d in map(pydicom.dcmread, files)}


def _assert_one_sct_per_series(orthanc, selected: dict, tmp: Path) -> None:
    """Each selected MR series has exactly one sCT series with the right count, study, frame and HU values."""
    for i, (uid, mr) in enumerate(selected.items()):
        scts = _sct_series(orthanc, str(mr[0].StudyInstanceUID))
        assert len(scts) == 1, f"series {uid}: {len(scts)} sCT series in Orthanc"
        instances = [pydicom.dcmread(io.BytesIO(orthanc.instance_file(i_id))) for i_id in scts[0]["Instances"]]
        assert len(instances) == len(mr)
        assert {str(d.StudyInstanceUID) for d in instances} == {str(mr[0].StudyInstanceUID)}
        assert {str(d.FrameOfReferenceUID) for d in instances} == {str(mr[0].FrameOfReferenceUID)}
        assert {str(d.ReferencedSeriesSequence[0].SeriesInstanceUID) for d in instances} == {uid}
        expected = _direct_translation(mr, tmp / f"direct{i}")
        assert set(expected) == {str(d.SOPInstanceUID) for d in instances}
        for d in instances:
            np.testing.assert_array_equal(_hu(d), expected[str(d.SOPInstanceUID)])


def test_batch_job_move_then_get_stores_one_sct_per_selected_series(orthanc, tmp_path):
    selected, others = phantom_archive(num_patients=3)
    c_store(orthanc.dicom_port, orthanc.aet, [ds for s in selected.values() for ds in s] + others)

    _, cfg = _config(orthanc, tmp_path / "state_move", "move")
    plan = PacsBatchJob(cfg, LinearTranslator()).run(dry_run=True)
    assert sorted(p.series_uid for p in plan.planned) == sorted(selected)
    assert _journal_rows(tmp_path / "state_move") == {}  # a dry run records nothing

    job = PacsBatchJob(cfg, LinearTranslator())
    before = time.monotonic()
    summary = job.run()
    took = time.monotonic() - before
    assert summary.exit_code == EXIT_OK and sorted(summary.stored) == sorted(selected)
    assert 0.5 * took <= summary.wall_s <= took  # the pass's own clock, around the whole pass
    assert summary.series_per_hour == pytest.approx(3600.0 * len(selected) / summary.wall_s)
    print(f"C-MOVE pass: {len(summary.stored)} series in {summary.wall_s:.2f} s = "
          f"{summary.series_per_hour:.0f} series/hour")
    _assert_one_sct_per_series(orthanc, selected, tmp_path / "check_move")
    scout_study = str(others[0].StudyInstanceUID)
    assert len(_sct_series(orthanc, scout_study)) == 1  # only the T1's; not the localizer, T2 or CT

    again = PacsBatchJob(cfg, LinearTranslator()).run()
    assert again.exit_code == EXIT_OK and again.planned == [] and again.stored == []

    _, cfg_get = _config(orthanc, tmp_path / "state_get", "get", port=0)
    summary = PacsBatchJob(cfg_get, LinearTranslator()).run()
    assert summary.exit_code == EXIT_OK and sorted(summary.stored) == sorted(selected)
    print(f"C-GET pass: {summary.series_per_hour:.0f} series/hour")
    _assert_one_sct_per_series(orthanc, selected, tmp_path / "check_get")
    assert not any((tmp_path / "state_get" / "work").iterdir())


def _journal_rows(state_dir: Path) -> dict[str, tuple]:
    path = state_dir / "journal.sqlite"
    if not path.exists():
        return {}
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT series_uid, state, attempts, reason, sct_series_uid FROM series").fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return {}
    finally:
        con.close()
    return {r[0]: r[1:] for r in rows}


def _cli(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "drdd_med.cli.main", "pacs-batch", "--config", str(config_path), "--once"]


def _cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}


def test_kill_9_after_first_store_then_rerun_stores_each_series_exactly_once(orthanc, tmp_path):
    selected, _ = phantom_archive(num_patients=3, extras=False)
    c_store(orthanc.dicom_port, orthanc.aet, [ds for s in selected.values() for ds in s])
    state = tmp_path / "state"
    raw, _ = _config(orthanc, state, inference={"delay_s": 1.0})  # slow enough to be killed mid-pass
    config_path, rerun_path = tmp_path / "pacs.json", tmp_path / "pacs_rerun.json"
    config_path.write_text(json.dumps(raw))
    rerun_path.write_text(json.dumps({**raw, "inference": {}}))

    proc = subprocess.Popen(_cli(config_path), cwd=REPO, env=_cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(r[0] == "stored" for r in _journal_rows(state).values()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"job ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    states = [r[0] for r in _journal_rows(state).values()]
    assert states.count("stored") >= 1 and states.count("stored") < len(selected)

    rerun = subprocess.run(_cli(rerun_path), cwd=REPO, env=_cli_env(), capture_output=True, timeout=90)
    assert rerun.returncode == 0, rerun.stderr.decode()[-3000:]
    rows = _journal_rows(state)
    assert sorted(rows) == sorted(selected) and {r[0] for r in rows.values()} == {"stored"}
    for uid, mr in selected.items():
        scts = _sct_series(orthanc, str(mr[0].StudyInstanceUID))
        assert len(scts) == 1 and len(scts[0]["Instances"]) == len(mr)
        assert scts[0]["MainDicomTags"]["SeriesInstanceUID"] == rows[uid][3]
    assert not list((state / "work").iterdir())  # no orphan work folders left


def test_pacs_outage_mid_job_fails_clearly_then_completes_after_restart(orthanc, tmp_path):
    selected, _ = phantom_archive(num_patients=3, extras=False)
    c_store(orthanc.dicom_port, orthanc.aet, [ds for s in selected.values() for ds in s])
    _, cfg = _config(orthanc, tmp_path / "state", acse_timeout_s=3, connection_timeout_s=3)

    crash = LinearTranslator(on_translate=lambda n: orthanc.stop(kill=True) if n == 1 else None)  # PACS dies
    summary = PacsBatchJob(cfg, crash).run()
    assert summary.exit_code == EXIT_FAILED_SERIES and summary.stored == []
    assert sorted(summary.failed) == sorted(selected)
    peer = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    assert all(peer in reason for reason in summary.failed.values()), summary.failed
    with Journal(cfg.journal_path) as journal:
        entries = {e.series_uid: e for e in journal.entries()}
    assert {e.state for e in entries.values()} == {"failed"} and {e.attempts for e in entries.values()} == {1}
    translated = [uid for uid, e in entries.items() if e.sct_series_uid]
    assert len(translated) >= 1  # the series translated before the outage keeps its sCT for the next run

    down = PacsBatchJob(cfg, LinearTranslator()).run()
    assert down.exit_code == EXIT_PACS_ERROR and peer in down.error and down.planned == []

    orthanc.start()
    resumed = LinearTranslator()
    summary = PacsBatchJob(cfg, resumed).run()
    assert summary.exit_code == EXIT_OK and sorted(summary.stored) == sorted(selected)
    assert resumed.calls == len(selected) - len(translated)  # stored again without translating again
    _assert_one_sct_per_series(orthanc, selected, tmp_path / "check")


def test_corrupt_and_incomplete_series_fail_with_reason_others_continue(orthanc, tmp_path):
    selected, _ = phantom_archive(num_patients=2, extras=False)
    broken, _ = phantom_archive(num_patients=2, extras=False)
    (gap_uid, gap), (bad_uid, bad) = broken.items()
    del gap[len(gap) // 2]  # a missing slice inside the volume
    bad[3].PixelData = bad[3].PixelData[: len(bad[3].PixelData) // 2]  # truncated pixel data
    c_store(orthanc.dicom_port, orthanc.aet, [ds for s in [*selected.values(), gap, bad] for ds in s])
    _, cfg = _config(orthanc, tmp_path / "state", max_attempts=2)

    summary = PacsBatchJob(cfg, LinearTranslator()).run()
    assert summary.exit_code == EXIT_FAILED_SERIES
    assert sorted(summary.stored) == sorted(selected) and sorted(summary.failed) == sorted([gap_uid, bad_uid])
    assert "not a complete, consistent series" in summary.failed[gap_uid]
    assert bad_uid in summary.failed[bad_uid]
    _assert_one_sct_per_series(orthanc, selected, tmp_path / "check")
    for mr in (gap, bad):
        assert _sct_series(orthanc, str(mr[0].StudyInstanceUID)) == []

    retry = PacsBatchJob(cfg, LinearTranslator()).run()  # retried once more (max_attempts=2) ...
    assert sorted(retry.failed) == sorted([gap_uid, bad_uid])
    final = PacsBatchJob(cfg, LinearTranslator()).run()  # ... then left as failed with its reason
    assert final.planned == [] and final.exit_code == EXIT_OK
    with Journal(cfg.journal_path) as journal:
        for uid in (gap_uid, bad_uid):
            entry = journal.get(uid, MODEL_VERSION)
            assert entry.state == "failed" and entry.attempts == 2 and entry.reason == summary.failed[uid]
