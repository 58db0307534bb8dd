"""The bundle's time budget end to end: a stage planned far beyond the budget is shortened, its LR schedule with it,
exports a model, and a rerun of the same command counts it as complete instead of training on."""

from __future__ import annotations

import re

import pytest
import torch
from bundle_cli import TINY, TRAIN, run_bundle

pytestmark = pytest.mark.slow

PLANNED = 100_000


def test_planned_stage_beyond_the_budget_is_shortened_saved_and_skipped_on_rerun(tmp_path):
    args = ["run", "train_noise", "--config_file", TRAIN, "--bundle_root", str(tmp_path), *TINY,
            "--epochs", "1", "--epoch_length", str(PLANNED), "--checkpoint_interval", "50", "--log_interval", "50",
            "--time_budget_minutes", "0.1"]
    log = run_bundle(*args).stdout
    match = re.search(r"noise stage: [\d.]+ it/s, so (\d+) of the planned 100000 iterations fit", log)
    assert match, log[-3000:]
    length = int(match.group(1))
    assert 100 <= length < PLANNED
    state = torch.load(tmp_path / "models" / "noise_checkpoint.pt", weights_only=True)
    assert state["trainer"]["iteration"] == state["trainer"]["budget_iterations"] == length
    assert state["noise_lr_scheduler"]["t_total"] == length, "the LR schedule must end with the shortened stage"
    assert state["noise_lr_scheduler"]["_last_lr"][0] < 1e-6, "the cosine decay must have reached its end"
    assert (tmp_path / "models" / "model.pt").is_file()

    rerun = run_bundle(*args).stdout
    assert f"noise stage is complete (iteration {length} of {length} (shortened by the time budget)" in rerun
    assert torch.load(tmp_path / "models" / "noise_checkpoint.pt", weights_only=True)["trainer"]["iteration"] == length
