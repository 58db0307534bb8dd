"""CoupledNet / EntangledNet: output layout (r̂ first, ε̂ second) and inputs."""

from __future__ import annotations

import torch

from drdd_med.networks.factory import build_coupled_net


def test_coupled_net_splits_residual_and_noise():
    net = build_coupled_net(2, 1, 2, preset="tiny")
    x, source, t = torch.randn(2, 2, 8, 8), torch.randn(2, 1, 8, 8), torch.tensor([1.0, 500.0])
    full = net(x, source, t)
    residual, noise = net.predict(x, source, t)
    assert full.shape == (2, 4, 8, 8)
    assert torch.equal(residual, full[:, :2]) and torch.equal(noise, full[:, 2:])


def test_entangled_net_uses_each_network_for_one_half():
    net = build_coupled_net(2, 1, 1, preset="tiny", entangled=True)
    x, source, t = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8), torch.tensor([10.0])
    residual, noise = net.predict(x, source, t)
    inputs = torch.cat([x, source], 1)
    assert torch.equal(residual, net.residual_net(inputs, timesteps=t))
    assert torch.equal(noise, net.noise_net(inputs, timesteps=t))
    assert net.divisor == 2
