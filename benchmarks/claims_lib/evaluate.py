"""Sampling and scoring of the claims benchmark: slices -> 3D volume in HU -> SynthRAD2023 metrics inside the mask."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.inferers.baselines import CoupledInferer, RegressionInferer
from drdd_med.inferers.inferer import DRDDInferer
from drdd_med.metrics.functional import synthrad2023_metrics, tissue_mae
from drdd_med.transforms.array import unit_to_window

__all__ = ["Sampler", "drdd_sampler", "coupled_sampler", "regression_sampler", "evaluate", "METRIC_KEYS",
           "RescaledNoiseInferer"]

#: Per-volume metrics kept (HU, dB, unitless).
METRIC_KEYS = ("mae", "psnr", "ssim", "mae_bone", "mae_soft_tissue", "mae_air", "mean_error")
#: slices per network call during sampling
CHUNK = 64


class RescaledNoiseInferer(DRDDInferer):
    """DRDD inferer whose noise net was trained at another noise level ``trained_level``.

    The noise net's time input encodes the noise std relative to its training level (1000·std/level), so a
    denoiser trained at level L can denoise a state of std s < L when fed 1000·s/L. The residual stage runs at
    the scheduler's level; only the noise-net time input is rescaled by ``scheduler.noise_level / trained_level``.
    """

    def __init__(self, scheduler: DRDDScheduler, trained_level: float, **kwargs: Any) -> None:
        super().__init__(scheduler, **kwargs)
        self.factor = scheduler.noise_level / float(trained_level)

    def noise_fn(self, network: nn.Module):
        return lambda x, source, t_input: network(x, source, t_input * self.factor, stage="noise")


#: ``sampler(source_slices, generator) -> predicted slices``, both (Z, 1, H, W) in [-1, 1].
Sampler = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def drdd_sampler(net: nn.Module, level: float, residual_steps: int, noise_steps: int, subtract_noise: bool = False,
                 noise_trained_level: float | None = None) -> Sampler:
    """DRDD two-stage sampler (DRDDInferer); ``noise_trained_level`` != level rescales the noise-net time input."""
    sched = DRDDScheduler(noise_level=level)
    if noise_trained_level is not None and abs(noise_trained_level - level) > 1e-9:
        inferer = RescaledNoiseInferer(sched, noise_trained_level, residual_steps=residual_steps,
                                       noise_steps=noise_steps, subtract_noise=subtract_noise)
    else:
        inferer = DRDDInferer(sched, residual_steps=residual_steps, noise_steps=noise_steps,
                              subtract_noise=subtract_noise)
    return lambda src, gen: inferer.sample(src, net, generator=gen)


def coupled_sampler(net: nn.Module, level: float, num_steps: int) -> Sampler:
    """Coupled RDDM sampler (CoupledInferer) for a CoupledNet or EntangledNet."""
    inferer = CoupledInferer(CoupledScheduler(noise_level=level), num_steps=num_steps)
    return lambda src, gen: inferer.sample(src, net, generator=gen)


def regression_sampler(net: nn.Module) -> Sampler:
    """One call of the regression net."""
    inferer = RegressionInferer(clip=True)

    def run(src: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        net.eval()
        with torch.no_grad():
            return inferer(src, net)

    return run


def evaluate(sampler: Sampler, volumes: list, seed: int, keep_slice: bool = False) -> dict[str, Any]:
    """Translate every evaluation volume slice by slice and score it in 3D.

    Args:
        sampler: the method.
        volumes: :class:`~claims_lib.data.EvalVolume` list.
        seed: sampling seed (one generator for the whole evaluation).
        keep_slice: also return the middle slice of the first volume (HU) for the example figure.

    Returns:
        ``{"per_volume": [metrics...], "mean": {...}, "std": {...}, "seconds_per_slice": float}``; metric units:
        HU for MAE/mean error, dB for PSNR.
    """
    gen = torch.Generator().manual_seed(seed)
    per_volume, seconds, slices, example = [], 0.0, 0, None
    for k, vol in enumerate(volumes):
        start = time.perf_counter()
        preds = [sampler(vol.source[i:i + CHUNK], gen) for i in range(0, vol.source.shape[0], CHUNK)]
        seconds += time.perf_counter() - start
        slices += vol.source.shape[0]
        pred = torch.cat(preds)[:, 0].numpy().astype(np.float64)  # (Z, H, W)
        sct = np.transpose(np.asarray(unit_to_window(pred)), (1, 2, 0))  # (H, W, Z) in HU
        metrics = synthrad2023_metrics(vol.ct_hu, sct, vol.mask)
        tissue = tissue_mae(vol.ct_hu, sct, vol.mask)
        metrics.update({key: tissue[key] for key in ("mae_bone", "mae_soft_tissue", "mae_air", "mean_error")})
        per_volume.append({key: float(metrics[key]) for key in METRIC_KEYS})
        if keep_slice and k == 0:
            example = sct[:, :, sct.shape[2] // 2].astype(np.float32)
    table = np.array([[m[key] for key in METRIC_KEYS] for m in per_volume])
    out = {
        "per_volume": per_volume,
        "mean": dict(zip(METRIC_KEYS, np.nanmean(table, axis=0).tolist())),
        "std": dict(zip(METRIC_KEYS, np.nanstd(table, axis=0).tolist())),
        "seconds_per_slice": seconds / max(slices, 1),
    }
    if example is not None:
        out["example_slice"] = example
    return out
