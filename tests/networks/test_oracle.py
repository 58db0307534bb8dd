"""The test oracles (tests/oracles.py) return the exact quantities of the package's forward processes."""

from __future__ import annotations

import pytest
import torch
from oracles import OracleCoupledNet, Reference, oracle_drdd_net, time_input_sequence

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.scheduler import DRDDScheduler


def test_pointwise_oracle_predicts_residual_and_noise_from_inputs_only():
    sched = DRDDScheduler(noise_level=1.3)
    source = torch.rand(1, 3, 6, 6) * 2 - 1  # 2.5D stack; anchor is channel 1
    x0 = -0.5 * source[:, 1:2]
    noise = torch.randn(1, 1, 6, 6)
    net = oracle_drdd_net(1, target_fn=lambda s: -0.5 * s[:, 1:2], noise_level=1.3)
    assert net.noise_conditioned
    t = torch.tensor([321])
    x_res = sched.add_residual(x0, source, noise, t)
    assert torch.allclose(net(x_res, source, sched.time_input_residual(t), stage="residual"), source[:, 1:2] - x0)
    x_noise = sched.add_noise(x0, noise, t)
    assert torch.allclose(net(x_noise, source, sched.time_input_noise(t), stage="noise"), noise, atol=1e-4)
    assert time_input_sequence(net.noise_net) == [float(sched.time_input_noise(t))]


def test_oracle_needs_exactly_one_target_description():
    with pytest.raises(ValueError, match="exactly one"):
        oracle_drdd_net(1)


def test_coupled_oracle_recovers_noise():
    sched = CoupledScheduler()
    x0, source, noise = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    t = torch.tensor([100, 900])
    net = OracleCoupledNet(Reference(), 1, target=x0)
    residual, eps = net.predict(sched.add_coupled(x0, source, noise, t), source, sched.time_input_coupled(t))
    assert torch.allclose(residual, source - x0) and torch.allclose(eps, noise, atol=1e-4)
