"""Prepare-batch objects turning dictionary batches into ``(inputs, target, args, kwargs)`` for MONAI trainers.

Each pairs with a stage inferer (:mod:`drdd_med.engines.stage_inferers`) that applies the forward process and
calls the network, so a stock ``monai.engines.SupervisedTrainer`` trains each stage unchanged:

=========================  ==========================  ===============================  =======================
prepare-batch              stage inferer               regression target                batch keys
=========================  ==========================  ===============================  =======================
``NoisePrepareBatch``      ``NoiseStageInferer``       ε (or x0, ``noise_prediction``)  target [, source]
``ResidualPrepareBatch``   ``ResidualStageInferer``    anchor(source) - target          source, target
``CoupledPrepareBatch``    ``CoupledStageInferer``     cat[anchor(source) - target, ε]  source, target
``RegressionPrepareBatch`` ``RegressionInferer``       target                           source, target
=========================  ==========================  ===============================  =======================

Randomness (timesteps, noise) is drawn from an optional ``torch.Generator`` for reproducible runs.

Example (noise stage on target-only items; the optimizer holds only that stage's parameters)::

    net = build_drdd_net(2, 1, 1, preset="small")
    sched = DRDDScheduler()
    trainer = SupervisedTrainer(
        device=device, max_epochs=100, train_data_loader=ct_loader, network=net,
        optimizer=torch.optim.Adam(net.noise_net.parameters(), lr=8e-5), loss_function=torch.nn.MSELoss(),
        prepare_batch=NoisePrepareBatch(sched), inferer=NoiseStageInferer(sched),
    )

The residual stage swaps in ``net.residual_net.parameters()``, ``ResidualPrepareBatch`` and
``ResidualStageInferer``; :class:`~drdd_med.engines.joint.JointTrainer` trains both at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.engines.utils import DiffusionPrepareBatch, PrepareBatch
from monai.utils import convert_to_tensor

from drdd_med.diffusion.anchor import residual_target
from drdd_med.diffusion.scheduler import DRDDScheduler, check_timesteps
from drdd_med.keys import SOURCE, TARGET
from drdd_med.networks.checks import check_finite, check_same_spatial

__all__ = ["NoisePrepareBatch", "ResidualPrepareBatch", "CoupledPrepareBatch", "RegressionPrepareBatch", "get_item",
           "read_domain", "read_pair"]


def get_item(batchdata: Any, key: str, device: Any, non_blocking: bool, **kwargs: Any) -> torch.Tensor:
    """``batchdata[key]`` as a plain tensor on ``device``, checked for NaN/inf; ValueError naming the key when absent.

    MONAI collates ``MetaTensor`` batches; their ``__torch_function__`` wraps every operation of the forward and
    backward pass (measured: 90 % of a training iteration of the ``compact`` preset at 64²), and training needs no
    metadata, so it is dropped here.
    """
    if not isinstance(batchdata, Mapping):
        raise ValueError(f"expected a dictionary batch with key {key!r}, got {type(batchdata).__name__}.")
    if key not in batchdata:
        raise ValueError(f"batch has no key {key!r} (keys: {sorted(batchdata)}); set the prepare-batch's *_key.")
    value = batchdata[key]
    value = convert_to_tensor(value, track_meta=False).to(device=device, non_blocking=non_blocking, **kwargs)
    check_finite(f"batch[{key!r}]", value)
    return value


def read_pair(batchdata: Any, source_key: str, target_key: str, device: Any = None, non_blocking: bool = False,
              **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(source, target)`` from a dictionary batch (:func:`get_item`), checked for matching batch/spatial shapes."""
    source = get_item(batchdata, source_key, device, non_blocking, **kwargs)
    target = get_item(batchdata, target_key, device, non_blocking, **kwargs)
    check_same_spatial(source_key, source, target_key, target)
    return source, target


def read_domain(batchdata: Any, key: str | None, device: Any) -> dict[str, torch.Tensor]:
    """``{"domain": (B,) long labels}`` from ``batchdata[key]``, or ``{}`` when ``key`` is None."""
    if key is None:
        return {}
    if key not in batchdata:
        raise ValueError(f"batch has no key {key!r} (keys: {sorted(batchdata)}); a domain-embedding model needs the "
                         "source domain of every item.")
    return {"domain": torch.as_tensor(batchdata[key]).long().reshape(-1).to(device)}


class _SchedulerPrepareBatch(DiffusionPrepareBatch):
    """DiffusionPrepareBatch hooks (``get_noise``, ``get_timesteps``, ``get_target``) with a seeded generator; the
    arguments are documented on :class:`ResidualPrepareBatch`."""

    def __init__(self, scheduler: DRDDScheduler, source_key: str = SOURCE, target_key: str = TARGET,
                 generator: torch.Generator | None = None, timesteps: Sequence[int] | None = None) -> None:
        super().__init__(num_train_timesteps=scheduler.num_train_timesteps)
        self.scheduler = scheduler
        self.source_key, self.target_key = source_key, target_key
        self.generator = generator
        self.timesteps = None if timesteps is None else check_timesteps(timesteps, scheduler.num_train_timesteps)
        self._timestep_values = None if timesteps is None else torch.tensor(self.timesteps)  # built once

    def _device(self, like: torch.Tensor) -> torch.device:
        return self.generator.device if self.generator is not None else like.device

    def get_noise(self, images: torch.Tensor) -> torch.Tensor:
        return torch.randn(images.shape, generator=self.generator, device=self._device(images), dtype=images.dtype)

    def get_timesteps(self, images: torch.Tensor) -> torch.Tensor:
        shape, device = (images.shape[0],), self._device(images)
        if self.timesteps is None:
            return torch.randint(0, self.num_train_timesteps, shape, generator=self.generator, device=device)
        pick = torch.randint(0, len(self.timesteps), shape, generator=self.generator, device=device)
        return self._timestep_values.to(device)[pick]

    def _draw(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get_noise(images).to(images.device), self.get_timesteps(images).to(images.device)


class NoisePrepareBatch(_SchedulerPrepareBatch):
    """Noise stage: ``{"target": x0[, "source"]}`` -> ``(x0, ε, (), {"noise", "timesteps"[, "source"]})``; the
    target is x0 instead of ε when the scheduler's ``noise_prediction`` is ``"sample"``.

    Works on target-only items (unpaired CT) unless ``conditioned``; the source is read only when ``conditioned``
    (for a source-conditioned noise net). Other arguments as for :class:`ResidualPrepareBatch`.
    """

    def __init__(self, scheduler: DRDDScheduler, target_key: str = TARGET, source_key: str = SOURCE,
                 conditioned: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__(scheduler, source_key, target_key, generator)
        self.conditioned = bool(conditioned)

    def get_target(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.scheduler.noise_target(images, noise)

    def __call__(self, batchdata: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any):
        infer_kwargs: dict[str, Any] = {}
        if self.conditioned:
            infer_kwargs["source"], x0 = read_pair(batchdata, self.source_key, self.target_key, device, non_blocking,
                                                   **kwargs)
        else:
            x0 = get_item(batchdata, self.target_key, device, non_blocking, **kwargs)
        noise, timesteps = self._draw(x0)
        return x0, self.get_target(x0, noise, timesteps), (), {"noise": noise, "timesteps": timesteps, **infer_kwargs}


class ResidualPrepareBatch(_SchedulerPrepareBatch):
    """Residual stage: ``{"source", "target"}`` -> ``(x0, anchor(source) - x0, (), {"noise", "timesteps", "source"})``.

    Args:
        scheduler: the DRDD scheduler (T and the coefficients).
        source_key: key of the source, (B, Cs, *spatial) in [-1, 1].
        target_key: key of the clean target, (B, Ct, *spatial) in [-1, 1].
        generator: optional random generator for t and ε.
        timesteps: the timesteps t is drawn from, uniformly (e.g. the sampler's, see
            :func:`~drdd_med.diffusion.scheduler.training_timesteps`); None draws from all ``0 ... T-1``.
        domain_key: key of (B,) source-domain labels, passed on as ``domain`` (a domain-embedding model); None
            passes none.
    """

    def __init__(self, scheduler: DRDDScheduler, source_key: str = SOURCE, target_key: str = TARGET,
                 generator: torch.Generator | None = None, domain_key: str | None = None,
                 timesteps: Sequence[int] | None = None) -> None:
        super().__init__(scheduler, source_key, target_key, generator, timesteps)
        self.domain_key = domain_key

    def __call__(self, batchdata: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any):
        source, x0 = read_pair(batchdata, self.source_key, self.target_key, device, non_blocking, **kwargs)
        noise, timesteps = self._draw(x0)
        extra = read_domain(batchdata, self.domain_key, device)
        return x0, residual_target(source, x0), (), {"noise": noise, "timesteps": timesteps, "source": source, **extra}


class CoupledPrepareBatch(_SchedulerPrepareBatch):
    """Coupled RDDM baseline: target ``cat([anchor(source) - x0, ε], dim=1)`` (2*Ct channels), residual kwargs."""

    def __call__(self, batchdata: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any):
        source, x0 = read_pair(batchdata, self.source_key, self.target_key, device, non_blocking, **kwargs)
        noise, timesteps = self._draw(x0)
        target = torch.cat([residual_target(source, x0), noise], dim=1)
        return x0, target, (), {"noise": noise, "timesteps": timesteps, "source": source}


class RegressionPrepareBatch(PrepareBatch):
    """Direct regression: ``{"source", "target"}`` -> ``(source, target)``.

    Args:
        source_key: key of the source, (B, Cs, *spatial).
        target_key: key of the target, (B, Ct, *spatial).
        domain_key: key of (B,) source-domain labels, then passed to the inferer as ``domain`` (validation of a
            domain-embedding DRDD model with a volume inferer); None passes none.
    """

    def __init__(self, source_key: str = SOURCE, target_key: str = TARGET, domain_key: str | None = None) -> None:
        self.source_key, self.target_key, self.domain_key = source_key, target_key, domain_key

    def __call__(self, batchdata: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any):
        pair = read_pair(batchdata, self.source_key, self.target_key, device, non_blocking, **kwargs)
        extra = read_domain(batchdata, self.domain_key, device)
        return (*pair, (), extra) if extra else pair
