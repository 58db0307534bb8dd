"""Exponential moving average of network weights, kept in a module so it checkpoints like any network."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA", "EMAHandler"]


def _unwrap(network: nn.Module) -> nn.Module:
    return network.module if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else network


class ModelEMA(nn.Module):
    """EMA copy of a network: ``ema = decay * ema + (1 - decay) * weights`` (buffers are copied).

    ``ModelEMA.ema_model`` is a frozen copy of the network (same class, same attributes), so its ``state_dict``
    loads into a fresh network with ``torch.load(..., weights_only=True)``.

    Args:
        network: the trained network (DDP/DataParallel wrappers are unwrapped).
        decay: EMA decay in [0, 1) (reference code: 0.995 every 10 steps).
    """

    def __init__(self, network: nn.Module, decay: float = 0.995) -> None:
        super().__init__()
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}.")
        self.ema_model = copy.deepcopy(_unwrap(network)).eval().requires_grad_(False)
        self.decay = float(decay)
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.long))

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Move the EMA weights towards ``network``'s current weights."""
        source = _unwrap(network)
        for ema_p, p in zip(self.ema_model.parameters(), source.parameters()):
            if ema_p.is_floating_point():
                ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - self.decay)
            else:
                ema_p.copy_(p.detach())
        for ema_b, b in zip(self.ema_model.buffers(), source.buffers()):
            ema_b.copy_(b)
        self.num_updates += 1

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.ema_model(*args, **kwargs)

    def train(self, mode: bool = True) -> ModelEMA:
        """The EMA copy always stays in eval mode."""
        super().train(mode)
        self.ema_model.eval()
        return self


class EMAHandler:
    """Ignite handler updating a :class:`ModelEMA` from ``engine.network`` every ``interval`` iterations.

    Args:
        ema: the EMA holder (checkpoint ``ema.ema_model`` or ``ema`` with MONAI's ``CheckpointSaver``).
        interval: update every this many iterations.
        start_iteration: first iteration at which updates happen (earlier ones are skipped).
        network: the module to average (default: ``engine.network``), e.g. one stage's network ``net.noise_net``
            when ``ema`` holds only that network.
    """

    def __init__(self, ema: ModelEMA, interval: int = 10, start_iteration: int = 0,
                 network: nn.Module | None = None) -> None:
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1, got {interval}.")
        self.ema = ema
        self.interval = int(interval)
        self.start_iteration = int(start_iteration)
        self.network = network

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Any) -> None:
        if engine.state.iteration >= self.start_iteration:
            self.ema.update(engine.network if self.network is None else self.network)
