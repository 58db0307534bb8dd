"""Stage inferers apply the forward process and call the right network with the right time input.

A recording network captures what each stage inferer feeds it; the states and time inputs are compared with the
paper's formulas evaluated on the independent float64 schedule of ``tests/oracles.py``.
"""

from __future__ import annotations

import pytest
import torch
from oracles import OracleCoupledNet, Reference, oracle_drdd_net
from torch import nn

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.engines.prepare_batch import CoupledPrepareBatch, NoisePrepareBatch, ResidualPrepareBatch
from drdd_med.engines.stage_inferers import CoupledStageInferer, NoiseStageInferer, ResidualStageInferer
from drdd_med.networks.factory import build_drdd_net


class Recorder(nn.Module):
    """Stands in for a DRDDNet / CoupledNet: keeps the arguments of its last call and returns zeros."""

    def forward(self, x, source, timesteps, stage=None):
        self.x, self.source, self.timesteps, self.stage = x, source, timesteps, stage
        return torch.zeros_like(x)


def _batch(source_channels: int = 1):
    g = torch.Generator().manual_seed(0)
    source = torch.rand(3, source_channels, 8, 8, generator=g) * 2 - 1
    return {"source": source, "target": torch.rand(3, 1, 8, 8, generator=g) * 2 - 1}


def _inputs(source_channels: int = 1):
    """(source, x0, noise, timesteps) of one stage call: a paired batch of 3, noise and three timesteps."""
    source, x0 = _batch(source_channels).values()
    return source, x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 321, 999])


def _coef(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype).view(-1, *[1] * (like.ndim - 1))


@pytest.mark.parametrize("level", [1.0, 0.7])
@pytest.mark.parametrize("source_channels", [1, 3])
def test_residual_stage_feeds_the_residual_state_and_time_input(level, source_channels):
    sched, ref = DRDDScheduler(noise_level=level), Reference(level)
    source, x0, noise, t = _inputs(source_channels)
    net = Recorder()
    ResidualStageInferer(sched)(x0, net, noise=noise, timesteps=t, source=source)
    anchor = source[:, source_channels // 2:][:, :1]  # the middle slice of a 2.5D stack
    expected = x0 + ref.sigma_n * noise + _coef([ref.residual(v) for v in t.tolist()], x0) * (anchor - x0)
    assert net.stage == "residual" and net.source is source
    torch.testing.assert_close(net.x, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(net.timesteps, torch.tensor([1000 * ref.residual(v) for v in t.tolist()]),
                               atol=1e-3, rtol=1e-6)


@pytest.mark.parametrize("level", [1.0, 0.7])
def test_noise_stage_feeds_the_noise_state_and_time_input(level):
    sched, ref = DRDDScheduler(noise_level=level), Reference(level)
    _, x0, noise, t = _inputs()
    net = Recorder()
    NoiseStageInferer(sched)(x0, net, noise=noise, timesteps=t)
    assert net.stage == "noise" and net.source is None
    torch.testing.assert_close(net.x, x0 + _coef([ref.noise(v) for v in t.tolist()], x0) * noise, atol=1e-6, rtol=0)
    torch.testing.assert_close(net.timesteps, torch.tensor([1000 * ref.noise(v) / level for v in t.tolist()]),
                               atol=1e-3, rtol=1e-6)


def test_coupled_stage_feeds_the_coupled_state_and_the_timestep():
    ref = Reference()
    source, x0, noise, t = _inputs()
    net = Recorder()
    CoupledStageInferer(CoupledScheduler())(x0, net, noise=noise, timesteps=t, source=source)
    expected = x0 + _coef([ref.residual(v) for v in t.tolist()], x0) * (source - x0) \
        + _coef([ref.noise(v) for v in t.tolist()], x0) * noise
    torch.testing.assert_close(net.x, expected, atol=1e-6, rtol=0)
    assert net.timesteps.dtype == torch.float32 and net.timesteps.tolist() == [0.0, 321.0, 999.0]


@pytest.mark.parametrize("level", [1.0, 0.7])
def test_oracle_predictions_equal_the_training_targets(level):
    """Prepare-batch targets and stage inferers agree: the noise oracle decodes the time input, so a wrong forward
    process, time input or target gives a wrong noise; the residual oracle returns the true residual."""
    sched = DRDDScheduler(noise_level=level)
    batch = _batch()
    net = oracle_drdd_net(1, target=batch["target"], noise_level=level)
    x0, target, _, kwargs = ResidualPrepareBatch(sched)(batch)
    torch.testing.assert_close(target, batch["source"] - batch["target"])
    assert torch.allclose(ResidualStageInferer(sched)(x0, net, **kwargs), target)
    x0, target, _, kwargs = NoisePrepareBatch(sched)(batch)
    assert torch.allclose(NoiseStageInferer(sched)(x0, net, **kwargs), target, atol=1e-3)


def test_coupled_oracle_prediction_equals_the_training_target():
    sched = CoupledScheduler()
    batch = _batch()
    x0, target, _, kwargs = CoupledPrepareBatch(sched)(batch)
    pred = CoupledStageInferer(sched)(x0, OracleCoupledNet(Reference(), 1, target=batch["target"]), **kwargs)
    assert torch.allclose(pred, target, atol=1e-3)


def test_stage_inferer_rejects_indivisible_patches():
    sched = DRDDScheduler()
    net = build_drdd_net(2, 1, 1, preset="tiny")
    x0 = torch.zeros(1, 1, 8, 9)
    with pytest.raises(ValueError, match="DivisiblePad"):
        NoiseStageInferer(sched)(x0, net, noise=torch.zeros_like(x0), timesteps=torch.tensor([3]))


def test_absolute_noise_stage_trains_over_sigma_max_with_time_input_1000_sigma():
    """noise_time_input="absolute", noise_sigma_max=1 at noise level 0.2: the states span the σ_max schedule and
    the time input is 1000 σ of each state (METHOD.md §6.3)."""
    sched, wide = DRDDScheduler(noise_level=0.2, noise_time_input="absolute", noise_sigma_max=1.0), Reference(1.0)
    _, x0, noise, t = _inputs()
    net = Recorder()
    NoiseStageInferer(sched)(x0, net, noise=noise, timesteps=t)
    torch.testing.assert_close(net.x, x0 + _coef([wide.noise(v) for v in t.tolist()], x0) * noise, atol=1e-6, rtol=0)
    torch.testing.assert_close(net.timesteps, torch.tensor([1000 * wide.noise(v) for v in t.tolist()]),
                               atol=1e-3, rtol=1e-6)
