"""Time budget: the allowance arithmetic, a stage shortened with its LR schedule, saved, skipped when complete and
resumed towards the shortened length without duplicate iterations (a fake clock: one second per iteration)."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.engines import ModelEMA, NoisePrepareBatch, NoiseStageInferer
from drdd_med.workflows.budget import BUDGET_KEY, StageBudget, TimeBudget, stage_length
from drdd_med.workflows.model_config import ModelConfig
from drdd_med.workflows.stages import NetworkTraining, StageCheckpoint, run_stage


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_allowance_shares_the_time_left_with_the_stages_to_come():
    clock = FakeClock()
    budget = TimeBudget(1.0, {"noise": 100, "residual": 100}, min_iterations=20, clock=clock)
    budget.start(["noise", "residual"])
    clock.now = 10.0
    # 50 s left for 90 + 100 iterations at 1 it/s: both stages scaled alike, (n - 10) + n = 50 -> n = 30
    assert budget.allowance("noise", done=10, planned=100, rate=1.0) == 30
    # deciding again at iteration 20 at the same speed keeps n = 30 (40 s left: (30 - 20) + 30 = 40)
    clock.now = 20.0
    assert budget.allowance("noise", done=20, planned=100, rate=1.0) == 30
    clock.now = 10.0
    # at 4 it/s all 190 fit in 47.5 s
    assert budget.allowance("noise", done=10, planned=100, rate=4.0) == 100
    # the last stage gets all the time left: 50 s x 1 it/s
    assert budget.allowance("residual", done=0, planned=100, rate=1.0) == 50
    clock.now = 100.0  # past the deadline: the floor, never below what is done
    assert budget.allowance("residual", done=5, planned=100, rate=1.0) == 20
    assert budget.allowance("residual", done=30, planned=100, rate=1.0) == 30


def test_no_budget_means_the_plan():
    for minutes in (0, None):
        budget = TimeBudget(minutes, {"noise": 100})
        budget.start(["noise"])
        assert not budget.enabled and math.isinf(budget.seconds_left())
        assert budget.allowance("noise", done=1, planned=100, rate=1e-3) == 100


def test_bad_budgets_are_refused():
    with pytest.raises(ValueError, match=">= 0 minutes"):
        TimeBudget(-1, {"noise": 1})
    with pytest.raises(ValueError, match="no planned iterations for stage.*'joint'"):
        TimeBudget(1, {"noise": 1}).start(["noise", "joint"])


def make_stage(tmp_path, minutes, epochs=10, epoch_length=10, seconds=lambda iteration: 1.0):
    """A tiny noise-stage trainer with its budget handler and checkpoint, as train.json wires it; iteration k takes
    ``seconds(k)`` of the fake clock (by default one second, so at the end of iteration k the clock reads k)."""
    torch.manual_seed(0)
    config = ModelConfig(preset="tiny", network_overrides={"channels": [8, 8], "norm_num_groups": 8})
    net = config.build_network()
    sched = DRDDScheduler()
    clock = FakeClock()
    budget = TimeBudget(minutes, {"noise": epochs * epoch_length}, min_iterations=1, clock=clock)
    optim = NetworkTraining("noise", net.noise_net, ModelEMA(net.noise_net, decay=0.9), epochs * epoch_length,
                            learning_rate=1e-3, warmup_iterations=1)

    def tick(engine):
        clock.now += seconds(engine.state.iteration + 1)

    ckpt = StageCheckpoint(tmp_path / "noise_checkpoint.pt", optim.save_dict, interval=5)
    trainer = SupervisedTrainer(
        device="cpu", max_epochs=epochs, epoch_length=epoch_length,
        train_data_loader=[{"target": torch.rand(2, 1, 16, 16) * 2 - 1}], network=net, optimizer=optim.optimizer,
        loss_function=torch.nn.MSELoss(), prepare_batch=NoisePrepareBatch(sched, generator=torch.Generator()),
        inferer=NoiseStageInferer(sched),
        train_handlers=[optim, StageBudget(budget, "noise", [optim], skip_iterations=2, probe_iterations=3)],
    )
    trainer.add_event_handler(Events.ITERATION_STARTED, tick)
    seen: list[int] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.iteration))
    budget.start(["noise"])
    return trainer, ckpt, optim, seen


def test_a_stage_that_does_not_fit_is_shortened_with_its_lr_schedule(tmp_path, single_thread, caplog):
    # 30 s at 1 it/s: decided at iteration 5 (rate over iterations 2..5), 25 s left -> 5 + 25 = 30 iterations
    trainer, ckpt, optim, seen = make_stage(tmp_path, minutes=0.5)
    with caplog.at_level(logging.INFO, logger="drdd_med.workflows.budget"):
        assert run_stage("noise", trainer, ckpt) == 30
    assert seen == list(range(1, 31))
    assert "noise stage: 1.00 it/s, so 30 of the planned 100 iterations fit" in caplog.text
    assert stage_length(trainer) == 30 and optim.lr_scheduler.t_total == 30
    assert optim.optimizer.param_groups[0]["lr"] < 1e-9  # the cosine decay ended at the shortened length
    state = torch.load(ckpt.path, weights_only=True)
    assert state["trainer"]["iteration"] == 30 and state["trainer"][BUDGET_KEY] == 30
    assert state["noise_lr_scheduler"]["t_total"] == 30


def test_a_stage_that_speeds_up_follows_quietly(tmp_path, single_thread, caplog):
    # 1 s per iteration, then 0.9 s from iteration 6: the length moves 30 -> 31 (epoch 1) -> 32 (epoch 2), small
    # corrections that the LR schedule follows and the log does not repeat
    trainer, ckpt, optim, seen = make_stage(tmp_path, minutes=0.5, seconds=lambda k: 1.0 if k <= 5 else 0.9)
    with caplog.at_level(logging.INFO, logger="drdd_med.workflows.budget"):
        assert run_stage("noise", trainer, ckpt) == 32
    assert seen == list(range(1, 33)) and optim.lr_scheduler.t_total == 32
    assert caplog.text.count("LR schedule included") == 1


def test_a_shortened_complete_stage_is_skipped_on_rerun(tmp_path, single_thread, caplog):
    trainer, ckpt, _, _ = make_stage(tmp_path, minutes=0.5)
    run_stage("noise", trainer, ckpt)
    trainer2, ckpt2, optim2, seen2 = make_stage(tmp_path, minutes=60)  # a generous budget does not reopen it
    with caplog.at_level(logging.INFO, logger="drdd_med.workflows.stages"):
        assert run_stage("noise", trainer2, ckpt2) == 30
    assert seen2 == []
    assert "noise stage is complete (iteration 30 of 30 (shortened by the time budget)" in caplog.text
    assert optim2.lr_scheduler.t_total == 30


def test_a_killed_shortened_stage_resumes_to_its_length_without_duplicates(tmp_path, single_thread):
    trainer, ckpt, _, seen = make_stage(tmp_path, minutes=0.5)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.terminate() if e.state.iteration == 20 else None)
    ckpt.attach(trainer)
    trainer.run()
    assert seen[-1] == 20 and torch.load(ckpt.path, weights_only=True)["trainer"][BUDGET_KEY] == 30
    trainer2, ckpt2, optim2, seen2 = make_stage(tmp_path, minutes=60)  # the saved length is a ceiling
    assert run_stage("noise", trainer2, ckpt2) == 30
    assert seen2 == list(range(21, 31))
    assert optim2.lr_scheduler.t_total == 30
    assert {int(s["step"]) for s in optim2.optimizer.state.values()} == {30}


def test_a_stage_that_fits_trains_the_plan(tmp_path, single_thread):
    trainer, ckpt, optim, seen = make_stage(tmp_path, minutes=5)  # 300 s for 100 iterations
    epochs = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(e.state.epoch))
    assert run_stage("noise", trainer, ckpt) == 100
    assert epochs == list(range(1, 11)), "the last epoch's handlers (the evaluator) must run"
    assert seen == list(range(1, 101)) and optim.lr_scheduler.t_total == 100
    assert torch.load(ckpt.path, weights_only=True)["trainer"][BUDGET_KEY] == 0
