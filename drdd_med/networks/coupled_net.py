"""Networks of the coupled RDDM baseline: one U-Net predicting (residual, noise), or two ("entangled")."""

from __future__ import annotations

import torch
from torch import nn

from drdd_med.networks.drdd_net import network_divisor

__all__ = ["CoupledNet", "EntangledNet"]


class CoupledNet(nn.Module):
    """One conditional network predicting residual and noise as 2*Ct output channels (METHOD.md §8).

    Input ``cat([x_t, source], dim=1)``; output channels ``[:Ct]`` are r̂ (``anchor(source) - x0``), ``[Ct:]`` ε̂.

    Args:
        net: network mapping (B, Ct + Cs, *spatial) -> (B, 2 * Ct, *spatial), called ``net(x, timesteps=t)``.
        target_channels: Ct.
    """

    def __init__(self, net: nn.Module, target_channels: int) -> None:
        super().__init__()
        self.net = net
        self.target_channels = int(target_channels)
        self.divisor = network_divisor(net)

    def forward(self, x: torch.Tensor, source: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """(B, 2*Ct, *spatial) concatenated (r̂, ε̂) for state ``x`` (B, Ct, ...), source and (B,) time inputs."""
        return self.net(torch.cat([x, source], dim=1), timesteps=timesteps)

    def predict(
        self, x: torch.Tensor, source: torch.Tensor, t_input: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(r̂, ε̂), each (B, Ct, *spatial)."""
        out = self(x, source, t_input)
        return out[:, : self.target_channels], out[:, self.target_channels :]


class EntangledNet(CoupledNet):
    """The paper's "entangled" baseline: DRDD's two networks, both trained on the coupled path.

    Same interface as :class:`CoupledNet` (outputs concatenated), so the coupled prepare-batch, stage inferer and
    sampler apply unchanged. drdd_med samples it with the coupled (simultaneous) reverse step, not RDDM's
    residual-then-noise path-independent sampler: the paper compares against the coupled path, and with
    twice DRDD's per-stage step count the number of network calls is matched.

    Args:
        residual_net: (B, Ct + Cs, *spatial) -> (B, Ct, *spatial).
        noise_net: (B, Ct + Cs, *spatial) -> (B, Ct, *spatial).
        target_channels: Ct.
    """

    def __init__(self, residual_net: nn.Module, noise_net: nn.Module, target_channels: int) -> None:
        nn.Module.__init__(self)
        self.residual_net = residual_net
        self.noise_net = noise_net
        self.target_channels = int(target_channels)
        self.divisor = max(network_divisor(residual_net), network_divisor(noise_net))

    def forward(self, x: torch.Tensor, source: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([x, source], dim=1)
        residual = self.residual_net(inputs, timesteps=timesteps)
        return torch.cat([residual, self.noise_net(inputs, timesteps=timesteps)], dim=1)
