"""RegressionNet: a diffusion U-Net used as a regressor with the fixed time input 0."""

from __future__ import annotations

import torch

from drdd_med.networks.factory import build_regression_net


def test_regression_calls_the_unet_with_time_zero():
    net = build_regression_net(2, 1, 1, preset="tiny")
    source = torch.randn(3, 1, 8, 8)
    assert torch.equal(net(source), net.net(source, timesteps=torch.zeros(3)))
    assert net.target_channels == 1
