"""Tests for drdd_med.slicer_support.process with real child processes."""

from __future__ import annotations

import os
import sys
import time

import pytest

from drdd_med.slicer_support.process import TranslateProcess, kill_process_tree
from drdd_med.slicer_support.progress import ProgressEvent

# Child that starts a grandchild, reports its pid, then sleeps: cancel must kill both.
TREE_SCRIPT = (
    "import subprocess, sys, time\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('GRANDCHILD', g.pid, flush=True)\n"
    "print('PROGRESS 1/4 started', flush=True)\n"
    "time.sleep(60)\n"
)


def alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (a killed orphan may wait to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def wait_for_lines(proc, count, timeout_s=10.0):
    lines, end = [], time.monotonic() + timeout_s
    while len(lines) < count and time.monotonic() < end:
        lines += proc.read_lines()
        time.sleep(0.02)
    return lines


def test_streams_output_and_progress():
    script = "print('hello'); print('PROGRESS 1/2 a', flush=True); print('PROGRESS 2/2 b'); raise SystemExit(3)"
    proc = TranslateProcess([sys.executable, "-c", script])
    proc.start()
    assert proc.wait(timeout_s=20) == 3
    assert proc.read_lines() == ["hello", "PROGRESS 1/2 a", "PROGRESS 2/2 b"]
    assert proc.progress == ProgressEvent(2, 2, "b") and proc.poll() == 3
    assert list(proc.tail)[-1] == "PROGRESS 2/2 b"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to check the process tree")
def test_cancel_kills_process_tree():
    proc = TranslateProcess([sys.executable, "-c", TREE_SCRIPT])
    proc.start()
    lines = wait_for_lines(proc, 2)
    grandchild = int(lines[0].split()[1])
    assert proc.progress == ProgressEvent(1, 4, "started") and alive(grandchild)
    begin = time.monotonic()
    proc.cancel()
    assert proc.poll() is not None and proc.poll() < 0 and proc.cancelled
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)
    assert time.monotonic() - begin < 6


def test_kill_process_tree_ignores_missing_process_and_start_twice_fails():
    proc = TranslateProcess([sys.executable, "-c", "pass"])
    proc.start()
    proc.wait(timeout_s=20)
    kill_process_tree(proc.pid)  # already exited: no error, and never our own process group
    assert os.getpgid(0) != proc.pid
    with pytest.raises(RuntimeError, match="already started"):
        proc.start()
    with pytest.raises(ValueError, match="non-empty"):
        TranslateProcess([])
