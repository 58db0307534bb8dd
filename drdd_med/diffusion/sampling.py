"""Sampling loops over model callables: DRDD's two-stage sampler and the coupled RDDM sampler.

The loops see networks only through callables ``fn(x, source, t_input)``, where ``t_input`` is a (B,) float
tensor of network time inputs. A volume inferer can therefore wrap each call in a slice or sliding-window
inferer over the whole-volume state, and one scheduler step is applied to the whole volume (MONAI_NOTES.md §7).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from drdd_med.diffusion.anchor import source_anchor
from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.scheduler import DRDDScheduler, check_eta, sampling_problem

__all__ = ["ModelFn", "sample_drdd", "sample_coupled"]

#: ``fn(x, source, t_input) -> prediction shaped like x``.
ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: ``callback(info)`` with keys ``stage`` ("residual" | "noise" | "coupled"), ``step``, ``t``, ``s``, ``x``, ``pred``.
Callback = Callable[[dict[str, Any]], None]


def _time_input(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), float(value), device=x.device, dtype=torch.float32)


def sample_drdd(
    scheduler: DRDDScheduler,
    residual_fn: ModelFn,
    noise_fn: ModelFn | None,
    source: torch.Tensor,
    noise: torch.Tensor,
    residual_steps: int = 2,
    noise_steps: int = 2,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    subtract_noise: bool = False,
) -> torch.Tensor:
    """DRDD sampling (paper Alg. 2; METHOD.md §6.1): all residual steps, then all noise steps.

    Args:
        scheduler: the DRDD coefficients.
        residual_fn: ``residual_fn(x, source, t_input)`` -> r̂ ≈ anchor(source) - x0.
        noise_fn: ``noise_fn(x, source, t_input)`` -> ε̂; unused (may be None) when ``subtract_noise``.
        source: (B, Cs, *spatial) source in [-1, 1].
        noise: z, (B, Ct, *spatial) standard Gaussian; the start is ``anchor(source) + sigma_n * z``.
        residual_steps: number of deterministic residual steps, 1 to T.
        noise_steps: number of noise (DDIM) steps, 0 to T; 0 returns the hand-over state x0 + sigma_n z.
        eta: noise-stage stochasticity in [0, 1] (0 = deterministic).
        generator: random generator for the noise-stage ξ when eta > 0.
        callback: called after every step with a dict (see ``Callback``).
        subtract_noise: the "without denoiser" ablation (METHOD.md §10.2): replace the noise stage by
            ``x - sigma_n * z``; requires ``noise_steps=0``.

    Returns:
        (B, Ct, *spatial) sample (not clamped).

    Raises:
        ValueError: step counts out of range (:func:`sampling_problem`), ``eta`` outside [0, 1], or inconsistent
            ``subtract_noise`` / ``noise_fn`` arguments; all before any network call.
    """
    problem = sampling_problem(residual_steps, noise_steps, scheduler.num_train_timesteps)
    if problem:
        raise ValueError(problem + ".")
    check_eta(eta)
    if subtract_noise and noise_steps:
        raise ValueError("subtract_noise replaces the noise stage: pass noise_steps=0 with subtract_noise=True.")
    if noise_steps and noise_fn is None:
        raise ValueError("noise_fn is required when noise_steps > 0.")
    # 1. start at the residual stage's endpoint (the "noise-carrying input")
    x = source_anchor(source, noise.shape[1]) + scheduler.sigma_n * noise
    # 2. residual stage: deterministic, noise untouched
    for i, (t, s) in enumerate(scheduler.timestep_pairs(residual_steps)):
        pred = residual_fn(x, source, _time_input(scheduler.time_input_residual(t), x))
        x = scheduler.step_residual(pred, t, s, x)
        if callback is not None:
            callback({"stage": "residual", "step": i, "t": t, "s": s, "x": x, "pred": pred})
    # 3. hand-over: x ≈ x0 + sigma_n z, the noise stage's state at t = T-1 (noise_coef[T-1] == sigma_n)
    if subtract_noise:
        return x - scheduler.sigma_n * noise
    if not noise_steps:
        return x
    # 4. noise stage: DDIM
    for i, (t, s) in enumerate(scheduler.timestep_pairs(noise_steps)):
        pred = noise_fn(x, source, _time_input(scheduler.time_input_noise(t), x))
        x = scheduler.step_noise(pred, t, s, x, eta=eta, generator=generator)
        if callback is not None:
            callback({"stage": "noise", "step": i, "t": t, "s": s, "x": x, "pred": pred})
    return x


def sample_coupled(
    scheduler: CoupledScheduler,
    model_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    source: torch.Tensor,
    noise: torch.Tensor,
    num_steps: int = 4,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Coupled RDDM sampling (METHOD.md §8): every step removes residual and noise together.

    Args:
        scheduler: the coupled process (same coefficients as DRDD).
        model_fn: ``model_fn(x, source, t_input)`` -> (r̂, ε̂), each shaped like x.
        source: (B, Cs, *spatial) source in [-1, 1].
        noise: z, (B, Ct, *spatial); the start is ``anchor(source) + sigma_n * z``.
        num_steps: number of reverse steps.
        eta: stochasticity (0 = deterministic).
        generator: random generator for ξ when eta > 0.
        callback: called after every step (``stage == "coupled"``; ``pred`` is the (r̂, ε̂) tuple).

    Returns:
        (B, Ct, *spatial) sample (not clamped).

    Raises:
        ValueError: ``num_steps`` outside [1, T] or ``eta`` outside [0, 1], before any network call.
    """
    pairs = scheduler.timestep_pairs(num_steps)
    check_eta(eta)
    x = source_anchor(source, noise.shape[1]) + scheduler.sigma_n * noise
    for i, (t, s) in enumerate(pairs):
        residual_pred, noise_pred = model_fn(x, source, _time_input(scheduler.time_input_coupled(t), x))
        x = scheduler.step_coupled(residual_pred, noise_pred, t, s, x, eta=eta, generator=generator)
        if callback is not None:
            callback({"stage": "coupled", "step": i, "t": t, "s": s, "x": x, "pred": (residual_pred, noise_pred)})
    return x
