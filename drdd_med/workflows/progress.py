"""Progress lines for long training stages: iteration, mean loss, speed and ETA, readable in a plain log file."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

__all__ = ["ProgressLogger", "format_duration"]

logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1h02m05s"``, ``65`` -> ``"1m05s"``, ``7.2`` -> ``"7s"``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _first_loss(output: Any) -> float:
    """The loss of a (decollated) MONAI trainer output: ``output[0]["loss"]`` or ``output["loss"]``."""
    item = output[0] if isinstance(output, (list, tuple)) else output
    return float(item["loss"])


class ProgressLogger:
    """Ignite handler logging ``<stage>: iteration i/N (p%), loss L, x it/s, ETA t`` every ``interval`` iterations.

    The ETA counts only iterations run in this process, so it is right after a resume too.

    Args:
        stage: name shown at the start of each line.
        interval: log every this many iterations.
        loss_transform: engine output -> loss float (default: MONAI's decollated ``output[0]["loss"]``).
    """

    def __init__(self, stage: str, interval: int = 50, loss_transform: Callable[[Any], float] = _first_loss) -> None:
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1, got {interval}.")
        self.stage, self.interval, self.loss_transform = stage, int(interval), loss_transform
        self._start_time = 0.0
        self._start_iteration = 0
        self._losses: list[float] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Any) -> None:
        self._start_time, self._start_iteration, self._losses = time.perf_counter(), engine.state.iteration, []

    def _total(self, engine: Any) -> int:
        from drdd_med.workflows.budget import stage_length  # budget imports this module

        return stage_length(engine)

    def iteration_completed(self, engine: Any) -> None:
        self._losses.append(self.loss_transform(engine.state.output))
        iteration = engine.state.iteration
        if iteration % self.interval:
            return
        total = self._total(engine)
        elapsed = time.perf_counter() - self._start_time
        done_here = max(iteration - self._start_iteration, 1)
        speed = done_here / max(elapsed, 1e-9)
        loss = sum(self._losses) / len(self._losses)
        self._losses = []
        logger.info("%s: iteration %d/%d (%.0f%%), loss %.4g, %.2f it/s, ETA %s", self.stage, iteration, total,
                    100.0 * iteration / total, loss, speed, format_duration((total - iteration) / speed))

    def completed(self, engine: Any) -> None:
        elapsed = time.perf_counter() - self._start_time
        logger.info("%s: finished at iteration %d in %s", self.stage, engine.state.iteration, format_duration(elapsed))
