"""Training-time inferers: apply one forward process and call the matching network (one loss per stage).

They follow the MONAI call ``inferer(inputs, network, *args, **kwargs)`` used by ``SupervisedTrainer``, with the
kwargs produced by :mod:`drdd_med.engines.prepare_batch`; ``inputs`` is the clean target x0.

``precision="bf16"`` runs the network call under bfloat16 autocast on the inputs' device (CPU or CUDA) and returns a
float32 prediction, so the loss and the optimizer stay in float32 and no gradient scaler is needed. This is done
here rather than by the trainer's ``amp`` flag because MONAI's trainers autocast on CUDA only.
"""

from __future__ import annotations

import torch
from monai.inferers import Inferer
from torch import nn

from drdd_med import runtime
from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.networks.checks import check_divisible
from drdd_med.networks.drdd_net import unwrap

__all__ = ["NoiseStageInferer", "ResidualStageInferer", "CoupledStageInferer", "RegressionStageInferer"]


class _StageInferer(Inferer):
    """Args: scheduler: the forward process's coefficients; precision: ``"fp32"`` or ``"bf16"`` (``"auto"`` is
    resolved for the inputs' device at each call)."""

    def __init__(self, scheduler: DRDDScheduler, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in runtime.PRECISIONS:
            raise ValueError(f"precision must be one of {list(runtime.PRECISIONS)}, got {precision!r}.")
        self.scheduler = scheduler
        self.precision = precision
        self._resolved: dict[torch.device, str] = {}  # "auto" resolved once per device, not per iteration

    def _run(self, network: nn.Module, like: torch.Tensor, *args: torch.Tensor, **kwargs: str) -> torch.Tensor:
        """``network(*args, **kwargs)`` under this inferer's precision, as float32."""
        if like.device not in self._resolved:
            self._resolved[like.device] = runtime.resolve_precision(self.precision, like.device)
        with runtime.autocast(like.device, self._resolved[like.device]):
            out = network(*args, **kwargs)
        return out.float()

    @staticmethod
    def _check(x0: torch.Tensor, network: nn.Module) -> None:
        check_divisible("training patch", x0, int(getattr(unwrap(network), "divisor", 1)))


class NoiseStageInferer(_StageInferer):
    """ε̂ = E_φ(x0 + β̄_t ε [, source], time input of β̄_t) (noise loss, paper Eq. 9); β̄_t runs up to the
    scheduler's ``noise_sigma_max``, the time input is its ``noise_time_input``."""

    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: nn.Module,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check(inputs, network)
        x_t = self.scheduler.add_noise(inputs, noise, timesteps)
        t_input = self.scheduler.time_input_noise_train(timesteps).to(inputs.device)
        return self._run(network, inputs, x_t, source, t_input, stage="noise")


class ResidualStageInferer(_StageInferer):
    """r̂ = R_θ(x0 + σ_n ε + ᾱ_t (anchor(source) - x0), source, 1000·ᾱ_t) (residual loss, paper Eq. 10)."""

    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: nn.Module,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        source: torch.Tensor,
        domain: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check(inputs, network)
        x_t = self.scheduler.add_residual(inputs, source, noise, timesteps)
        t_input = self.scheduler.time_input_residual(timesteps).to(inputs.device)
        extra = {} if domain is None else {"domain": domain}
        return self._run(network, inputs, x_t, source, t_input, stage="residual", **extra)


class CoupledStageInferer(_StageInferer):
    """cat[r̂, ε̂] = net(x0 + ᾱ_t (anchor(source) - x0) + β̄_t ε, source, t) for the coupled baseline."""

    scheduler: CoupledScheduler

    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: nn.Module,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        source: torch.Tensor,
    ) -> torch.Tensor:
        self._check(inputs, network)
        x_t = self.scheduler.add_coupled(inputs, source, noise, timesteps)
        return self._run(network, inputs, x_t, source, self.scheduler.time_input_coupled(timesteps).to(inputs.device))


class RegressionStageInferer(_StageInferer):
    """ŷ = net(source) of a :class:`~drdd_med.networks.RegressionNet` (direct regression: no forward process).

    Pairs with :class:`~drdd_med.engines.prepare_batch.RegressionPrepareBatch`, whose ``inputs`` are the source.
    Unlike the baseline's ``RegressionInferer`` it autocasts like the other stage inferers and does not clip.

    Args:
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``.
    """

    def __init__(self, precision: str = "fp32") -> None:
        super().__init__(None, precision)  # type: ignore[arg-type]  # one network call, no scheduler

    def __call__(self, inputs: torch.Tensor, network: nn.Module) -> torch.Tensor:  # type: ignore[override]
        self._check(inputs, network)
        return self._run(network, inputs, inputs)
