"""A wall-clock budget for training: the stages of one run share a deadline and shorten their schedule to meet it.

The quick start promises a trained model in under 10 minutes on 2 CPU cores, but CPUs differ: its 2 x 1600
iterations took 8 min on 2 AMD EPYC cores and 21 min on 2 Xeon cores of the same nominal class (the Xeon ran the
``lean`` nets at half the speed or less). A fixed iteration count cannot keep that promise; a deadline can:

- :class:`TimeBudget` is the run's clock. The run id starts it with the stages it will train, e.g.
  ``budget.start(["noise", "residual"])``, and knows each stage's planned iterations.
- :class:`StageBudget`, a train handler of each stage, measures the stage's speed (iterations/s after the first
  few, which pay for data caching) and asks the budget how many iterations fit: every stage still to train is scaled
  by the same fraction of its plan (at the measured speed), so that two planned 1600-iteration stages get equal
  shares, and the last stage takes whatever time is left (a share of *remaining plans* instead would let an early
  stage keep growing at each decision and starve the next one). When
  the plan does not fit, the stage is *shortened*, not cut: the LR schedules' ``t_total`` is set to the new length,
  so that the cosine decay still ends at the last iteration (a plain stop would leave the weights at a high LR).
  It decides after a probe of ``probe_iterations`` and again at every epoch end, so a slower or faster phase
  moves the end; the length never exceeds the plan (nor, in a resumed run, the length saved before).
- The shortened length is saved in the stage checkpoint (``trainer.budget_iterations``), so a killed run resumes
  towards it and a rerun counts the shortened stage as complete (:func:`stage_length`). Delete the checkpoint to
  retrain the stage in full.

Ignite offers ``Engine.terminate`` and ``max_iters`` but nothing that fits a schedule to a deadline; MONAI has no
time budget either. ``minutes=0`` (or None) turns the budget off and trains the planned iterations.

Example (what ``train.json`` wires up)::

    budget = TimeBudget(8.5, {"noise": 1600, "residual": 1600})
    budget.start(["noise", "residual"])
    noise_trainer = SupervisedTrainer(..., train_handlers=[optim, StageBudget(budget, "noise", [optim]), ...])
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ignite.distributed as idist
from ignite.engine import Events

from drdd_med.workflows.progress import format_duration

__all__ = ["TimeBudget", "StageBudget", "stage_length", "BUDGET_KEY"]

logger = logging.getLogger(__name__)

#: Trainer state attribute (saved in the stage checkpoint) holding a shortened stage's length; 0 = the plan.
BUDGET_KEY = "budget_iterations"


def stage_length(engine: Any) -> int:
    """The iterations a trainer's stage runs: its shortened length when the time budget set one, else
    ``max_epochs x epoch_length``."""
    planned = int(engine.state.max_epochs) * int(engine.state.epoch_length)
    shortened = int(getattr(engine.state, BUDGET_KEY, 0) or 0)
    return min(shortened, planned) if shortened > 0 else planned


class TimeBudget:
    """The wall-clock deadline shared by the training stages of one run.

    Args:
        minutes: training time, from :meth:`start` to the end of the last stage (what follows, export and the
            validation report, is not included); 0 or None: no budget.
        iterations: planned iterations of every stage the bundle knows (``{"noise": 1600, ...}``).
        min_iterations: a stage is never shortened below this many iterations (nor below its plan).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, minutes: float | None, iterations: Mapping[str, int], min_iterations: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        minutes = float(minutes or 0.0)
        if not math.isfinite(minutes) or minutes < 0:
            raise ValueError(f"time budget must be >= 0 minutes (0 turns it off), got {minutes}.")
        self.seconds = 60.0 * minutes
        self.iterations = {str(k): int(v) for k, v in iterations.items()}
        self.min_iterations = int(min_iterations)
        self.clock = clock
        self.stages: list[str] = []
        self.started_at: float | None = None

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def start(self, stages: Sequence[str]) -> None:
        """Start the clock for a run that trains ``stages`` in this order."""
        unknown = [s for s in stages if s not in self.iterations]
        if unknown:
            raise ValueError(f"time budget: no planned iterations for stage(s) {unknown}; known: {sorted(self.iterations)}.")
        self.stages = list(stages)
        self.started_at = self.clock()
        if self.enabled and idist.get_rank() == 0:
            logger.info("time budget: %s for training %s (stages are shortened to fit; --time_budget_minutes 0 "
                        "trains the full plan)", format_duration(self.seconds), " + ".join(self.stages))

    def seconds_left(self) -> float:
        """Seconds until the deadline (inf without a budget or before :meth:`start`)."""
        if not self.enabled or self.started_at is None:
            return math.inf
        return self.seconds - (self.clock() - self.started_at)

    def allowance(self, stage: str, done: int, planned: int, rate: float) -> int:
        """How many iterations ``stage`` may run in all, given ``done`` of ``planned`` and ``rate`` iterations/s.

        Every stage still to train is scaled by the same fraction of its plan: the length ``n`` solves
        ``(n - done) / rate + (n / planned) x later / rate = time left``, where ``later`` is the planned iterations
        of the stages that follow in this run (at this stage's speed; the last stage takes whatever is left). The
        answer is stable while the speed is: deciding again later in the stage gives the same ``n``. It is at
        least ``min_iterations`` (and ``done``), at most ``planned``.
        """
        left = self.seconds_left()
        later = sum(self.iterations[s] for s in self.stages[self.stages.index(stage) + 1:]) if stage in self.stages else 0
        if math.isinf(left) or rate <= 0 or done >= planned:
            return planned
        length = int((max(left, 0.0) * rate + done) * planned / (planned + later))
        return min(planned, max(length, self.min_iterations, done))


class StageBudget:
    """Train handler fitting one stage to a :class:`TimeBudget` (see the module docstring).

    Args:
        budget: the run's budget.
        stage: this stage's name in ``budget.iterations``.
        trainings: the stage's :class:`~drdd_med.workflows.stages.NetworkTraining` objects, whose LR schedules
            follow a shortened length.
        skip_iterations: iterations after the start not timed (data caching, first allocations).
        probe_iterations: timed iterations before the first decision.
    """

    #: a new length is logged when it differs from the one last logged by this fraction of the plan
    LOG_CHANGE = 0.1

    def __init__(self, budget: TimeBudget, stage: str, trainings: Sequence[Any] = (), skip_iterations: int = 5,
                 probe_iterations: int = 25) -> None:
        self.budget, self.stage, self.trainings = budget, stage, list(trainings)
        self.skip, self.probe = int(skip_iterations), int(probe_iterations)
        self._first = self._ceiling = 0
        self._logged = 0  # the length last logged
        self._timed_from: tuple[int, float] | None = None

    def attach(self, engine: Any) -> None:
        # the state attribute itself is declared (and checkpointed) by StageCheckpoint; reads default to 0 = the plan
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.decide)

    def started(self, engine: Any) -> None:
        # a length saved by an earlier run (resumed from its checkpoint) is a ceiling: a resumed run may only shorten
        self._first, self._ceiling, self._timed_from = engine.state.iteration, stage_length(engine), None
        self._logged = self._ceiling

    def iteration_completed(self, engine: Any) -> None:
        iteration = engine.state.iteration
        if iteration == self._first + self.skip:
            self._timed_from = (iteration, self.budget.clock())
        elif iteration == self._first + self.skip + self.probe:
            self.decide(engine)
        self._end_if_shortened(engine)

    @staticmethod
    def _end_if_shortened(engine: Any) -> None:
        # only a shortened stage is ended here: at its planned end Ignite stops by itself, after EPOCH_COMPLETED
        # (the last evaluation), which terminate() would skip
        if getattr(engine.state, BUDGET_KEY, 0) and engine.state.iteration >= stage_length(engine):
            engine.terminate()

    def decide(self, engine: Any) -> None:
        """Set the stage's length from its speed so far (all ranks take rank 0's decision)."""
        if not self.budget.enabled or self._timed_from is None:
            return
        iteration = engine.state.iteration
        first, since = self._timed_from
        elapsed = self.budget.clock() - since
        if iteration <= first or elapsed <= 0:
            return
        planned = int(engine.state.max_epochs) * int(engine.state.epoch_length)
        rate = (iteration - first) / elapsed
        allowed = self.budget.allowance(self.stage, iteration, self._ceiling, rate)
        length = int(idist.broadcast(float(allowed), src=0))
        before = stage_length(engine)
        setattr(engine.state, BUDGET_KEY, 0 if length >= planned else length)
        self._end_if_shortened(engine)
        if length == before:
            return
        for training in self.trainings:
            training.lr_scheduler.t_total = length
        if length < planned and self._logged < planned and abs(length - self._logged) < self.LOG_CHANGE * planned:
            return  # a small correction of a length already reported: applied, not logged
        self._logged = length
        if idist.get_rank() != 0:
            return
        if length < planned:
            logger.info("%s stage: %.2f it/s, so %d of the planned %d iterations fit the time budget (%s left); "
                        "shortened to %d, LR schedule included", self.stage, rate, length, planned,
                        format_duration(self.budget.seconds_left()), length)
        else:
            logger.info("%s stage: %.2f it/s; the planned %d iterations fit the time budget again", self.stage, rate,
                        planned)
