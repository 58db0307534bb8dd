"""ProgressLogger: iteration, mean loss and an ETA counted from this process's own speed."""

from __future__ import annotations

import logging

import pytest
from ignite.engine import Engine

from drdd_med.workflows.progress import ProgressLogger, format_duration


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (7.4, "7s"), (65, "1m05s"), (3725, "1h02m05s"),
                                           (float("inf"), "?"), (-1, "?")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_lines_report_mean_loss_and_progress_after_a_resume(caplog, monkeypatch):
    """Resumed at iteration 40 of 48 with one second per iteration: the ETA counts only this process's 1 it/s
    (not 41 it/s from all 41 iterations), and the mean loss only the iterations since the last line."""
    clock = [0.0]
    monkeypatch.setattr("drdd_med.workflows.progress.time.perf_counter", lambda: clock[0])

    def step(engine, batch):
        clock[0] += 1.0
        return [{"loss": float(engine.state.iteration)}]

    engine = Engine(step)
    engine.load_state_dict({"iteration": 40, "epoch_length": 4, "max_epochs": 12})  # what a checkpoint restores
    ProgressLogger("noise", interval=4).attach(engine)
    with caplog.at_level(logging.INFO, logger="drdd_med.workflows.progress"):
        engine.run([0, 1, 2, 3])
    lines = [r.getMessage() for r in caplog.records if r.name == "drdd_med.workflows.progress"]  # ignite may log too
    assert lines == [
        "noise: iteration 44/48 (92%), loss 42.5, 1.00 it/s, ETA 4s",
        "noise: iteration 48/48 (100%), loss 46.5, 1.00 it/s, ETA 0s",
        "noise: finished at iteration 48 in 8s",
    ]


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval"):
        ProgressLogger("noise", interval=0)
