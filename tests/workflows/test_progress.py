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


def test_lines_report_mean_loss_and_progress_after_a_resume(caplog):
    losses = iter(float(i) for i in range(1, 100))
    engine = Engine(lambda e, batch: [{"loss": next(losses)}])
    engine.state.max_epochs = None
    ProgressLogger("noise", interval=2).attach(engine)
    with caplog.at_level(logging.INFO, logger="drdd_med.workflows.progress"):
        engine.run([0, 1, 2, 3], max_epochs=1)
    lines = [r.getMessage() for r in caplog.records if r.name == "drdd_med.workflows.progress"]  # ignite may log too
    assert lines[0].startswith("noise: iteration 2/4 (50%), loss 1.5,")
    assert lines[1].startswith("noise: iteration 4/4 (100%), loss 3.5,") and lines[1].endswith("ETA 0s")
    assert lines[-1].startswith("noise: finished at iteration 4")


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval"):
        ProgressLogger("noise", interval=0)
