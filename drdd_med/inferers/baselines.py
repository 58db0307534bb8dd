"""Inferers of the baselines, with the MONAI call convention ``inferer(source, network)`` -> target in [-1, 1]."""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer
from torch import nn

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.sampling import sample_coupled
from drdd_med.inferers.inferer import check_source, ensemble
from drdd_med.keys import UNIT_MAX, UNIT_MIN

__all__ = ["CoupledInferer", "RegressionInferer"]


class CoupledInferer(Inferer):
    """Sample the coupled RDDM baseline (:class:`~drdd_med.networks.CoupledNet` or ``EntangledNet``).

    Args:
        scheduler: the coupled process; same coefficients and ``sigma_n`` as the DRDD model compared with.
        num_steps: reverse steps (default 4 = DRDD's 2 + 2 network calls for a CoupledNet).
        eta: stochasticity (0 = deterministic).
        clip: clamp the output to [-1, 1].
    """

    def __init__(self, scheduler: CoupledScheduler, num_steps: int = 4, eta: float = 0.0, clip: bool = True) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.num_steps = int(num_steps)
        self.eta = float(eta)
        self.clip = bool(clip)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return self.sample(inputs, network, *args, **kwargs)

    @torch.no_grad()
    def sample(
        self,
        source: torch.Tensor,
        network: nn.Module,
        num_steps: int | None = None,
        eta: float | None = None,
        generator: torch.Generator | None = None,
        num_samples: int = 1,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, Ct, *spatial) sample in [-1, 1] for a (B, Cs, *spatial) source; ``(mean, std)`` if num_samples > 1."""
        check_source(source, network)
        channels = getattr(network, "target_channels", None) or source.shape[1]
        shape = (source.shape[0], int(channels), *source.shape[2:])
        was_training = network.training
        network.eval()
        samples = []
        try:
            for _ in range(int(num_samples)):
                gen_device = generator.device if generator is not None else source.device
                noise = torch.randn(shape, generator=generator, device=gen_device, dtype=source.dtype).to(source.device)
                x = sample_coupled(
                    self.scheduler, network.predict, source, noise, self.num_steps if num_steps is None else num_steps,
                    eta=self.eta if eta is None else eta, generator=generator,
                )
                samples.append(x.clamp(UNIT_MIN, UNIT_MAX) if self.clip else x)
        finally:
            network.train(was_training)
        return samples[0] if len(samples) == 1 else ensemble(samples)


class RegressionInferer(Inferer):
    """One call of a :class:`~drdd_med.networks.RegressionNet`: ``inferer(source, net)`` -> target.

    Used for training (``SupervisedTrainer(inferer=RegressionInferer(clip=False))``) and inference of batches. The
    bundle's ``regression`` method uses :class:`~drdd_med.engines.stage_inferers.RegressionStageInferer` (training,
    with autocast) and :class:`~drdd_med.inferers.volume.VolumeRegressionInferer` (whole volumes) instead.

    Args:
        clip: clamp the output to [-1, 1] (keep False for training so gradients pass everywhere).
    """

    def __init__(self, clip: bool = True) -> None:
        super().__init__()
        self.clip = bool(clip)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        check_source(inputs, network)
        out = network(inputs, *args, **kwargs)
        return out.clamp(UNIT_MIN, UNIT_MAX) if self.clip else out
