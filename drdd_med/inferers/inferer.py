"""DRDDInferer: MONAI-style inferer running DRDD's two-stage sampler on a source image."""

from __future__ import annotations

import logging
from typing import Any

import torch
from monai.inferers import Inferer
from monai.utils import convert_to_tensor
from torch import nn

from drdd_med.diffusion.sampling import ModelFn, sample_drdd
from drdd_med.diffusion.scheduler import DRDDScheduler, check_eta
from drdd_med.keys import UNIT_MAX, UNIT_MIN
from drdd_med.networks.checks import check_divisible, check_finite
from drdd_med.networks.drdd_net import unwrap

__all__ = ["DRDDInferer", "check_noise_level", "check_source", "ensemble"]

logger = logging.getLogger(__name__)


def check_source(source: torch.Tensor, network: nn.Module) -> None:
    """Raise ValueError unless ``source`` is a finite (B, C, *spatial) tensor divisible by the network's factor."""
    check_finite("source", source)
    if source.ndim < 3:
        raise ValueError(f"source must be (B, C, *spatial), got shape {tuple(source.shape)}; add batch/channel axes.")
    check_divisible("source", source, int(getattr(unwrap(network), "divisor", 1)))


def check_noise_level(scheduler: DRDDScheduler, network: nn.Module, allow_mismatch: bool = False) -> None:
    """Refuse to sample when the scheduler's noise level differs from the one stored in the network (§6.3).

    Raises:
        ValueError: on a mismatch, unless ``allow_mismatch``.
    """
    stored = getattr(unwrap(network), "noise_level", None)
    if stored is None:
        return
    stored = float(stored)
    if abs(stored - scheduler.noise_level) > 1e-6 * max(1.0, stored):
        msg = (
            f"the scheduler's noise_level={scheduler.noise_level} differs from the network's noise_level={stored} "
            "(the residual stage was trained at that level; METHOD.md §6.3). Build the scheduler with "
            f"DRDDScheduler(noise_level={stored}) or pass allow_noise_level_mismatch=True to force it."
        )
        if not allow_mismatch:
            raise ValueError(msg)
        logger.warning("sampling with a noise-level mismatch: %s", msg)


def ensemble(samples: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-voxel mean and standard deviation (unbiased) of a list of equally shaped samples."""
    stack = torch.stack(samples, dim=0)
    return stack.mean(dim=0), stack.std(dim=0)


class DRDDInferer(Inferer):
    """Translate a source image with a :class:`~drdd_med.networks.DRDDNet`: residual steps, then noise steps.

    Override :meth:`residual_fn` / :meth:`noise_fn` to change how the networks are evaluated (e.g. slice by slice
    or by sliding window over a volume) and :meth:`initial_noise` to change how z is drawn; the loop itself is
    :func:`~drdd_med.diffusion.sampling.sample_drdd`.

    Args:
        scheduler: the DRDD coefficients; its noise level must match the network's.
        residual_steps: default number of residual steps.
        noise_steps: default number of noise steps (0 with ``subtract_noise`` for the no-denoiser ablation).
        eta: default noise-stage stochasticity (0 = deterministic).
        clip: clamp the output to [-1, 1].
        allow_noise_level_mismatch: sample even when the scheduler's and network's noise levels differ.
        subtract_noise: replace the noise stage by ``x - sigma_n * z`` (METHOD.md §10.2 ablation).

    Example:
        >>> from drdd_med import DRDDScheduler, DRDDInferer, build_drdd_net
        >>> net = build_drdd_net(2, 1, 1, preset="tiny")
        >>> inferer = DRDDInferer(DRDDScheduler())
        >>> ct = inferer(torch.zeros(1, 1, 16, 16), net)  # (1, 1, 16, 16) in [-1, 1]
    """

    def __init__(
        self,
        scheduler: DRDDScheduler,
        residual_steps: int = 2,
        noise_steps: int = 2,
        eta: float = 0.0,
        clip: bool = True,
        allow_noise_level_mismatch: bool = False,
        subtract_noise: bool = False,
    ) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.residual_steps = int(residual_steps)
        self.noise_steps = 0 if subtract_noise else int(noise_steps)
        self.eta = check_eta(eta)
        self.clip = bool(clip)
        self.allow_noise_level_mismatch = bool(allow_noise_level_mismatch)
        self.subtract_noise = bool(subtract_noise)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """``inferer(source, network)``: the translated image (see :meth:`sample` for keyword arguments)."""
        return self.sample(inputs, network, *args, **kwargs)

    # ------------------------------------------------------------------ overridable hooks
    def residual_fn(self, network: nn.Module) -> ModelFn:
        """Callable ``(x, source, t_input) -> r̂`` used by the sampler."""
        return lambda x, source, t_input: network(x, source, t_input, stage="residual")

    def noise_fn(self, network: nn.Module) -> ModelFn:
        """Callable ``(x, source, t_input) -> ε̂`` used by the sampler."""
        return lambda x, source, t_input: network(x, source, t_input, stage="noise")

    def initial_noise(
        self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """z ~ N(0, I) of the target's shape, drawn from ``generator`` (on ``generator``'s device when given)."""
        gen_device = generator.device if generator is not None else device
        return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)

    def validate(self, source: torch.Tensor, network: nn.Module) -> None:
        """Check the source (finite, divisible by the network's factor) and the noise level; raise ValueError."""
        check_source(source, network)
        check_noise_level(self.scheduler, network, self.allow_noise_level_mismatch)

    def target_channels(self, source: torch.Tensor, network: nn.Module) -> int:
        """Ct: the network's ``target_channels``, else the source's channel count."""
        channels = getattr(unwrap(network), "target_channels", None)
        return int(channels) if channels is not None else int(source.shape[1])

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        source: torch.Tensor,
        network: nn.Module,
        residual_steps: int | None = None,
        noise_steps: int | None = None,
        eta: float | None = None,
        generator: torch.Generator | None = None,
        num_samples: int = 1,
        return_intermediates: bool = False,
    ) -> Any:
        """Sample the target for ``source``.

        Args:
            source: (B, Cs, *spatial) source in [-1, 1]; spatial sizes divisible by ``network.divisor``.
            network: a DRDDNet (or any module with the same ``forward(x, source, t, stage=...)``).
            residual_steps: residual steps (default: the inferer's).
            noise_steps: noise steps (default: the inferer's).
            eta: noise-stage stochasticity (default: the inferer's).
            generator: random generator for z (and ξ when eta > 0); seeded -> bit-reproducible.
            num_samples: k > 1 draws k samples and returns their mean and per-voxel std (uncertainty map).
            return_intermediates: also return the list of states after each step (of the first sample).

        Returns:
            (B, Ct, *spatial) sample in [-1, 1]; ``(mean, std)`` when ``num_samples > 1``; with
            ``return_intermediates`` a tuple ``(result, intermediates)`` where ``intermediates`` is a list of dicts
            (``stage``, ``step``, ``t``, ``x``).
        """
        source = convert_to_tensor(source, track_meta=False)  # MetaTensor dispatch costs more than the network
        self.validate(source, network)
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        residual_steps = self.residual_steps if residual_steps is None else int(residual_steps)
        noise_steps = self.noise_steps if noise_steps is None else int(noise_steps)
        eta = self.eta if eta is None else float(eta)
        shape = (source.shape[0], self.target_channels(source, network), *source.shape[2:])
        was_training = network.training
        network.eval()
        intermediates: list[dict[str, Any]] = []

        def record(info: dict[str, Any]) -> None:
            intermediates.append({k: info[k] for k in ("stage", "step", "t")} | {"x": info["x"].clone()})

        residual_fn, noise_fn = self.residual_fn(network), self.noise_fn(network)
        samples = []
        try:
            for k in range(int(num_samples)):
                noise = self.initial_noise(shape, generator, source.device, source.dtype)
                x = sample_drdd(
                    self.scheduler, residual_fn, noise_fn, source, noise, residual_steps, noise_steps, eta=eta,
                    generator=generator, callback=record if (return_intermediates and k == 0) else None,
                    subtract_noise=self.subtract_noise,
                )
                samples.append(x.clamp(UNIT_MIN, UNIT_MAX) if self.clip else x)
        finally:
            network.train(was_training)
        result: Any = samples[0] if len(samples) == 1 else ensemble(samples)
        return (result, intermediates) if return_intermediates else result
