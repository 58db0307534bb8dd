"""A stock MONAI SupervisedTrainer trains each stage (and each baseline) on a tiny fixed 2D batch.

Each DRDD stage's loss must fall by at least 10x (mean of the first 10 vs the last 20 iterations), and only the
stage's own network may change.
"""

from __future__ import annotations

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

SIZE = 16


def fixed_batch() -> dict[str, torch.Tensor]:
    """A disc phantom: target in [-0.6, 0.6], source with inverted contrast plus a gradient."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    target = (((xx**2 + yy**2) < 0.5).float() * 1.2 - 0.6)[None, None].repeat(4, 1, 1, 1)
    return {"source": -0.8 * target + 0.1 * xx, "target": target}


def train(network, params, prepare_batch, inferer, steps, lr=3e-3):
    losses: list[float] = []
    trainer = SupervisedTrainer(
        device="cpu", max_epochs=1, train_data_loader=[fixed_batch()] * steps, network=network,
        optimizer=torch.optim.Adam(params, lr=lr), loss_function=torch.nn.MSELoss(),
        prepare_batch=prepare_batch, inferer=inferer,
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    trainer.run()
    return sum(losses[:10]) / 10, sum(losses[-20:]) / 20


@pytest.mark.parametrize("stage", ["noise", "residual"])
def test_each_drdd_stage_overfits_through_supervised_trainer(stage):
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
    first, last = train(net, own.parameters(), *pieces, steps=300)
    assert first / last >= 10, (first, last)
    assert all(torch.equal(a, b) for a, b in zip(frozen, other.parameters()))


def test_baselines_train_through_supervised_trainer():
    torch.manual_seed(0)
    sched = CoupledScheduler()
    coupled = build_coupled_net(2, 1, 1, preset="tiny")
    first, last = train(coupled, coupled.parameters(), CoupledPrepareBatch(sched, generator=torch.Generator().manual_seed(0)),
                        CoupledStageInferer(sched), steps=120)
    assert first / last >= 5, (first, last)
    regression = build_regression_net(2, 1, 1, preset="tiny")
    first, last = train(regression, regression.parameters(), RegressionPrepareBatch(), RegressionInferer(clip=False),
                        steps=120)
    assert first / last >= 10, (first, last)
