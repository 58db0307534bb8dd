"""EMA of a network's weights for MONAI trainers: torch's ``AveragedModel`` with its EMA update, as an Ignite handler.

Ignite's ``EMAHandler`` does the same update but keeps no count of updates, and MONAI attaches train handlers with
``attach(engine)`` alone, so two of them on one trainer (the joint stage's networks) share one
``engine.state.ema_momentum`` and warn. ``AveragedModel`` counts its updates in its ``n_averaged`` buffer, which the
stage checkpoint saves: export reads it to tell a trained network from an untrained one, and a resumed run
continues the count instead of restarting it.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from drdd_med.networks.drdd_net import unwrap

__all__ = ["ModelEMA"]


class ModelEMA:
    """Ignite handler keeping ``ema_model``, an EMA of ``network``: ``ema = decay * ema + (1 - decay) * weights``.

    ``ema_model`` is a ``torch.optim.swa_utils.AveragedModel`` (the first update copies the weights; buffers are
    averaged too). Its ``state_dict`` holds the network's tensors under ``module.`` plus ``n_averaged``, and loads
    with ``torch.load(weights_only=True)``; ``ema_model.module`` is a copy of the network (same class).

    Args:
        network: the network to average (a DDP / DataParallel wrapper is unwrapped), e.g. ``net.noise_net``.
        decay: EMA decay in [0, 1].
        interval: update every this many iterations.
    """

    def __init__(self, network: nn.Module, decay: float = 0.995, interval: int = 1) -> None:
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1, got {interval}.")
        self.network = unwrap(network)
        self.interval = int(interval)
        self.ema_model = AveragedModel(self.network, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)
        self.ema_model.requires_grad_(False).eval()

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Any = None) -> None:
        """Move the EMA weights towards the network's current weights."""
        self.ema_model.update_parameters(self.network)
