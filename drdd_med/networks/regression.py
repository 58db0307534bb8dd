"""The direct-regression baseline: one network call, source -> target (the strong baseline in MR->CT)."""

from __future__ import annotations

import torch
from torch import nn

from drdd_med.networks.drdd_net import network_divisor

__all__ = ["RegressionNet"]


class RegressionNet(nn.Module):
    """Wrap a diffusion U-Net as a plain regressor by calling it with the fixed time input 0.

    Using the same ``DiffusionModelUNet`` family as DRDD keeps the comparison like for like.

    Args:
        net: network mapping (B, Cs, *spatial) -> (B, Ct, *spatial), called ``net(x, timesteps=t)``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.divisor = network_divisor(net)
        self.source_channels = getattr(net, "in_channels", None)
        self.target_channels = getattr(net, "out_channels", None)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        """(B, Ct, *spatial) predicted target for a (B, Cs, *spatial) source in [-1, 1]."""
        timesteps = torch.zeros(source.shape[0], device=source.device, dtype=torch.float32)
        return self.net(source, timesteps=timesteps)
