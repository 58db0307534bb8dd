"""Oracle networks: exact predictions built from the forward processes, for verifying samplers and inferers.

With an oracle DRDDNet, every correct DRDD sampler (whole image, slice by slice, sliding window) must return the
target exactly (METHOD.md §10.1). The clean target is either a fixed tensor or a pointwise function of the source
anchor; the pointwise form gives the same answer on any patch or slice, so it also checks windowed inferers.
"""

from __future__ import annotations

from typing import Callable

import torch
from monai.utils import unsqueeze_right
from torch import nn

from drdd_med.diffusion.anchor import source_anchor
from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.scheduler import TIME_SCALE
from drdd_med.networks.coupled_net import CoupledNet
from drdd_med.networks.drdd_net import DRDDNet

__all__ = ["OracleResidualNet", "OracleNoiseNet", "OracleCoupledNet", "oracle_drdd_net"]

TargetFn = Callable[[torch.Tensor], torch.Tensor]


class _OracleBase(nn.Module):
    def __init__(self, target_channels: int, target: torch.Tensor | None, target_fn: TargetFn | None) -> None:
        super().__init__()
        if (target is None) == (target_fn is None):
            raise ValueError("give exactly one of target (a tensor) or target_fn (a pointwise map of the source).")
        self.target_channels = self.out_channels = int(target_channels)
        self.target = target
        self.target_fn = target_fn

    def _split(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        ct = self.target_channels
        return inputs[:, :ct], (inputs[:, ct:] if inputs.shape[1] > ct else None)

    def _x0(self, source: torch.Tensor | None) -> torch.Tensor:
        if self.target is not None:
            return self.target
        if source is None:
            raise ValueError("a target_fn oracle needs the source: build the DRDDNet with noise_conditioned=True.")
        return self.target_fn(source_anchor(source, self.target_channels))


class OracleResidualNet(_OracleBase):
    """Input ``cat([x_t, source])``; returns the true residual ``anchor(source) - x0``."""

    def forward(self, inputs: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        _, source = self._split(inputs)
        return source_anchor(source, self.target_channels) - self._x0(source)


class OracleNoiseNet(_OracleBase):
    """Input ``x_t`` (or ``cat([x_t, source])``); returns the consistent noise ``(x_t - x0) / β̄_t``.

    β̄_t is recovered from the time input ``1000 * β̄_t / noise_level`` (METHOD.md §10.1 item 4).
    """

    def __init__(self, target_channels: int, target=None, target_fn=None, noise_level: float = 1.0) -> None:
        super().__init__(target_channels, target, target_fn)
        self.noise_level = float(noise_level)

    def forward(self, inputs: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        x, source = self._split(inputs)
        noise_coef = unsqueeze_right(timesteps.to(x.dtype) * self.noise_level / TIME_SCALE, x.ndim)
        return (x - self._x0(source)) / noise_coef


class OracleCoupledNet(CoupledNet):
    """Coupled oracle: the true residual, and the noise recovered from ``x_t = x0 + ᾱ_t r + β̄_t ε`` (input t)."""

    def __init__(self, scheduler: CoupledScheduler, target_channels: int, target=None, target_fn=None) -> None:
        super().__init__(OracleResidualNet(target_channels, target, target_fn), target_channels)
        self.scheduler = scheduler

    def forward(self, x: torch.Tensor, source: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        residual = self.net(torch.cat([x, source], dim=1), timesteps)
        t = timesteps.round().long()
        r_coef = self.scheduler._gather(self.scheduler.residual_coef, t, x)
        n_coef = self.scheduler._gather(self.scheduler.noise_coef, t, x)
        x0 = source_anchor(source, self.target_channels) - residual
        return torch.cat([residual, (x - x0 - r_coef * residual) / n_coef], dim=1)


def oracle_drdd_net(
    target_channels: int,
    target: torch.Tensor | None = None,
    target_fn: TargetFn | None = None,
    noise_level: float = 1.0,
    noise_conditioned: bool | None = None,
) -> DRDDNet:
    """A DRDDNet whose residual and noise nets are oracles for the clean target.

    Args:
        target_channels: Ct.
        target: fixed clean target x0, (B, Ct, *spatial); or
        target_fn: pointwise map anchor(source) -> x0 (forces a source-conditioned noise net).
        noise_level: the level stored in the DRDDNet and used to decode the noise net's time input.
        noise_conditioned: defaults to ``target_fn is not None``.
    """
    if noise_conditioned is None:
        noise_conditioned = target_fn is not None
    return DRDDNet(
        OracleResidualNet(target_channels, target, target_fn),
        OracleNoiseNet(target_channels, target, target_fn, noise_level=noise_level),
        noise_conditioned=noise_conditioned,
        noise_level=noise_level,
        divisor=1,
        target_channels=target_channels,
    )
