"""Kill training with SIGKILL mid-stage, rerun the same command: it resumes at the saved iteration, not at 0."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest
import torch
from bundle_cli import REPO, TINY, TRAIN, bundle_command, env, run_bundle

pytestmark = pytest.mark.slow

TOTAL = 150


def saved_iteration(path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["trainer"]["iteration"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0


def test_sigkill_then_rerun_resumes_with_optimizer_and_ema(tmp_path):
    args = ["run", "train_noise", "--config_file", TRAIN, "--bundle_root", str(tmp_path), *TINY,
            "--epochs", "1", "--epoch_length", str(TOTAL), "--checkpoint_interval", "3", "--log_interval", "3"]
    checkpoint = tmp_path / "models" / "noise_checkpoint.pt"
    proc = subprocess.Popen(bundle_command(*args), cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while saved_iteration(checkpoint) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = saved_iteration(checkpoint)
    assert 3 <= killed_at < TOTAL, f"expected a kill mid-stage, checkpoint at {killed_at}"

    log = run_bundle(*args).stdout
    assert f"resuming noise stage from iteration {killed_at} of {TOTAL}" in log
    assert "training noise stage" not in log
    first = int(re.search(r"noise: iteration (\d+)/", log).group(1))
    assert killed_at < first <= killed_at + 3
    state = torch.load(checkpoint, weights_only=True)
    assert state["trainer"]["iteration"] == TOTAL
    # optimizer and EMA continued from the checkpoint: a restart would count TOTAL - killed_at updates
    assert {int(s["step"]) for s in state["noise_optimizer"]["state"].values()} == {TOTAL}
    assert int(state["noise_ema"]["n_averaged"]) == TOTAL
    assert (tmp_path / "models" / "model.pt").is_file()
