"""Stage inferers apply the scheduler's forward process and call the right network with the right time input."""

from __future__ import annotations

import pytest
import torch

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.engines.prepare_batch import CoupledPrepareBatch, NoisePrepareBatch, ResidualPrepareBatch
from drdd_med.engines.stage_inferers import CoupledStageInferer, NoiseStageInferer, ResidualStageInferer
from drdd_med.networks.factory import build_drdd_net
from drdd_med.networks.oracle import OracleCoupledNet, oracle_drdd_net


def _batch():
    g = torch.Generator().manual_seed(0)
    source = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    return {"source": source, "target": torch.rand(3, 1, 8, 8, generator=g) * 2 - 1}


@pytest.mark.parametrize("level", [1.0, 0.7])
def test_oracle_predictions_equal_the_training_targets(level):
    # the oracle decodes the time input, so this checks forward process, time input and target together
    sched = DRDDScheduler(noise_level=level)
    batch = _batch()
    net = oracle_drdd_net(1, target=batch["target"], noise_level=level)
    x0, target, _, kwargs = ResidualPrepareBatch(sched)(batch)
    assert torch.allclose(ResidualStageInferer(sched)(x0, net, **kwargs), target)
    x0, target, _, kwargs = NoisePrepareBatch(sched)(batch)
    assert torch.allclose(NoiseStageInferer(sched)(x0, net, **kwargs), target, atol=1e-3)


def test_coupled_oracle_prediction_equals_the_training_target():
    sched = CoupledScheduler()
    batch = _batch()
    x0, target, _, kwargs = CoupledPrepareBatch(sched)(batch)
    pred = CoupledStageInferer(sched)(x0, OracleCoupledNet(sched, 1, target=batch["target"]), **kwargs)
    assert torch.allclose(pred, target, atol=1e-3)


def test_stage_inferer_rejects_indivisible_patches():
    sched = DRDDScheduler()
    net = build_drdd_net(2, 1, 1, preset="tiny")
    x0 = torch.zeros(1, 1, 8, 9)
    with pytest.raises(ValueError, match="DivisiblePad"):
        NoiseStageInferer(sched)(x0, net, noise=torch.zeros_like(x0), timesteps=torch.tensor([3]))
