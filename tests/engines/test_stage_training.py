"""A stock MONAI SupervisedTrainer trains each stage (and each baseline) on a tiny fixed 2D batch.

Each DRDD stage's loss must fall by at least 10x (mean of the first 10 vs the last 20 iterations), and only the
stage's own network may change.
"""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.engines.prepare_batch import (
    CoupledPrepareBatch,
    NoisePrepareBatch,
    RegressionPrepareBatch,
    ResidualPrepareBatch,
)
from drdd_med.engines.stage_inferers import CoupledStageInferer, NoiseStageInferer, ResidualStageInferer
from drdd_med.inferers.baselines import RegressionInferer
from drdd_med.networks.factory import build_coupled_net, build_drdd_net, build_regression_net

logger = logging.getLogger(__name__)


def train(batch, network, params, prepare_batch, inferer, steps, lr=3e-3):
    losses: list[float] = []
    trainer = SupervisedTrainer(
        device="cpu", max_epochs=1, train_data_loader=[batch] * steps, network=network,
        optimizer=torch.optim.Adam(params, lr=lr), loss_function=torch.nn.MSELoss(),
        prepare_batch=prepare_batch, inferer=inferer,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    trainer.run()
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    name = type(inferer).__name__
    logger.info("%s: %d steps, loss %.4g -> %.4g (ratio %.1f)", name, steps, first, last, first / last)
    return first, last


@pytest.mark.parametrize("stage", ["noise", "residual"])
def test_each_drdd_stage_overfits_through_supervised_trainer(stage, single_thread, fixed_batch):
    torch.manual_seed(0)
    sched = DRDDScheduler()
    net = build_drdd_net(2, 1, 1, preset="tiny")
    gen = torch.Generator().manual_seed(1)
    own, other = (net.noise_net, net.residual_net) if stage == "noise" else (net.residual_net, net.noise_net)
    frozen = [p.detach().clone() for p in other.parameters()]
    if stage == "noise":
        pieces = NoisePrepareBatch(sched, generator=gen), NoiseStageInferer(sched)
    else:
        pieces = ResidualPrepareBatch(sched, generator=gen), ResidualStageInferer(sched)
    first, last = train(fixed_batch(), net, own.parameters(), *pieces, steps=300)
    assert first / last >= 10, (first, last)
    assert all(torch.equal(a, b) for a, b in zip(frozen, other.parameters()))


def test_baselines_train_through_supervised_trainer(single_thread, fixed_batch):
    torch.manual_seed(0)
    sched = CoupledScheduler()
    coupled = build_coupled_net(2, 1, 1, preset="tiny")
    prepare = CoupledPrepareBatch(sched, generator=torch.Generator().manual_seed(0))
    first, last = train(fixed_batch(), coupled, coupled.parameters(), prepare, CoupledStageInferer(sched), steps=120)
    assert first / last >= 5, (first, last)
    regression = build_regression_net(2, 1, 1, preset="tiny")
    first, last = train(fixed_batch(), regression, regression.parameters(), RegressionPrepareBatch(),
                        RegressionInferer(clip=False), steps=120)
    assert first / last >= 10, (first, last)


def test_a_wrapped_network_keeps_the_patch_divisibility_check(fixed_batch):
    sched = DRDDScheduler()
    net = torch.nn.DataParallel(build_drdd_net(2, 1, 1, preset="tiny"))  # divisor 2; DDP wraps it the same way
    x0, _, _, kwargs = NoisePrepareBatch(sched)({"target": fixed_batch()["target"][..., :15, :15]})
    with pytest.raises(ValueError, match="training patch"):
        NoiseStageInferer(sched)(x0, net, **kwargs)
