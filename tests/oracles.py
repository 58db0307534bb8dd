"""Test oracles: exact networks built from the forward processes, and an independent float64 reference schedule.

With oracle networks every correct DRDD sampler (whole image, slice by slice, sliding window) returns the target
exactly (METHOD.md §10.1). The noise oracle returns the noise consistent with its input, ``(x_t - x0) / β̄_t``, so
the *last* noise step lands on x0 from any state: a test of the output alone cannot see the residual stage or the
earlier noise steps. Tests therefore also compare every intermediate state with :func:`expected_drdd_states` and
the time inputs each oracle recorded with :func:`expected_time_inputs`, both computed here from the paper's
formulas in numpy, not with the package's scheduler.

The clean target is a fixed tensor or a pointwise map of the source's channels (a 2.5D stack included); the
pointwise form gives the same answer on any patch or slice, so it also checks windowed and slice inferers.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from drdd_med.diffusion.anchor import source_anchor
from drdd_med.networks.coupled_net import CoupledNet
from drdd_med.networks.drdd_net import DRDDNet

__all__ = ["OracleResidualNet", "OracleNoiseNet", "OracleCoupledNet", "oracle_drdd_net", "Reference",
           "expected_drdd_states", "expected_time_inputs", "time_input_sequence", "capture_noise",
           "sample_exact_path"]

TargetFn = Callable[[torch.Tensor], torch.Tensor]


class Reference:
    """DRDD's coefficients from METHOD.md §2, in float64 numpy: ``linear_beta`` 1e-4..0.02 over ``T`` steps.

    ``residual(t)`` is ᾱ_t (normalised so that ᾱ_{T-1} = 1 unless ``residual_schedule="code"``), ``noise(t)`` is
    β̄_t = noise_level * sqrt(1 - ā_t); both are 0 at t = -1 (the clean image).
    """

    def __init__(self, noise_level: float = 1.0, residual_schedule: str = "normalized", T: int = 1000) -> None:
        abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))
        residual = 1.0 - np.sqrt(abar)
        self.abar = abar
        self._residual = residual / residual[-1] if residual_schedule == "normalized" else residual
        self._noise = noise_level * np.sqrt(1.0 - abar)
        self.noise_level, self.T = float(noise_level), int(T)
        self.sigma_n = float(self._noise[-1])

    def residual(self, t: int) -> float:
        return 0.0 if t < 0 else float(self._residual[t])

    def noise(self, t: int) -> float:
        return 0.0 if t < 0 else float(self._noise[t])

    def timesteps(self, num_steps: int) -> list[int]:
        """The DDIM grid ``int(linspace(-1, T-1, n+1))``, from T-1 down to -1."""
        return [int(v) for v in np.linspace(-1, self.T - 1, num_steps + 1)[::-1]]

    def pairs(self, num_steps: int) -> list[tuple[int, int]]:
        ts = self.timesteps(num_steps)
        return list(zip(ts[:-1], ts[1:]))


def expected_drdd_states(ref: Reference, x0: torch.Tensor, anchor: torch.Tensor, z: torch.Tensor,
                         residual_steps: int, noise_steps: int) -> list[tuple[str, int, torch.Tensor]]:
    """(stage, t, state after the step) of an exact deterministic DRDD sampler fed the true residual and noise.

    Residual step t -> s: ``x0 + σ_n z + ᾱ_s (anchor - x0)`` (the last one is the hand-over ``x0 + σ_n z``);
    noise step t -> s: ``x0 + β̄_s z``.
    """
    states = [("residual", t, x0 + ref.sigma_n * z + ref.residual(s) * (anchor - x0))
              for t, s in ref.pairs(residual_steps)]
    return states + [("noise", t, x0 + ref.noise(s) * z) for t, s in ref.pairs(noise_steps)]


def expected_time_inputs(ref: Reference, residual_steps: int, noise_steps: int) -> tuple[list[float], list[float]]:
    """The networks' time inputs per step: residual ``1000 ᾱ_t``, noise ``1000 β̄_t / noise_level``."""
    residual = [1000.0 * ref.residual(t) for t, _ in ref.pairs(residual_steps)]
    return residual, [1000.0 * ref.noise(t) / ref.noise_level for t, _ in ref.pairs(noise_steps)]


def time_input_sequence(oracle: _OracleBase) -> list[float]:
    """The time inputs an oracle saw, one per sampler step: every call holds one value for the whole batch, and
    consecutive calls of one step (slice batches, windows) are merged."""
    values: list[float] = []
    for call in oracle.time_inputs:
        assert len(set(call)) == 1, f"one network call mixed time inputs {sorted(set(call))}"
        if not values or values[-1] != call[0]:
            values.append(call[0])
    return values


def capture_noise(inferer: Any) -> list[torch.Tensor]:
    """Record every initial noise z that ``inferer`` draws (wraps its ``initial_noise`` hook)."""
    drawn: list[torch.Tensor] = []
    draw = inferer.initial_noise

    def record(*args: Any, **kwargs: Any) -> torch.Tensor:
        drawn.append(draw(*args, **kwargs))
        return drawn[-1]

    inferer.initial_noise = record
    return drawn


def sample_exact_path(inferer: Any, net: DRDDNet, source: torch.Tensor, x0: torch.Tensor, anchor: torch.Tensor,
                      steps: tuple[int, int], noise_level: float = 1.0, **kwargs: Any) -> torch.Tensor:
    """Sample ``source`` with an oracle DRDDNet and assert that every intermediate state is the exact one for the
    inferer's z (``anchor`` is the source's anchor on the target's grid) and that both nets saw the reference time
    inputs; return the output for the caller to compare with the target."""
    z = capture_noise(inferer)
    out, states = inferer(source, net, return_intermediates=True, **kwargs)
    ref = Reference(noise_level)
    expected = expected_drdd_states(ref, x0, anchor, z[0], *steps)
    assert [(s["stage"], s["t"]) for s in states] == [(stage, t) for stage, t, _ in expected]
    for state, (stage, t, x) in zip(states, expected):
        assert state["x"].shape == x.shape and (state["x"] - x).abs().max() <= 1e-5, f"{stage} step at t={t}"
    residual_t, noise_t = expected_time_inputs(ref, *steps)
    assert np.allclose(time_input_sequence(net.residual_net), residual_t, rtol=1e-6, atol=0)
    assert np.allclose(time_input_sequence(net.noise_net), noise_t, rtol=1e-6, atol=0)
    return out


class _OracleBase(nn.Module):
    def __init__(self, target_channels: int, target: torch.Tensor | None, target_fn: TargetFn | None) -> None:
        super().__init__()
        if (target is None) == (target_fn is None):
            raise ValueError("give exactly one of target (a tensor) or target_fn (a pointwise map of the source).")
        self.target_channels = self.out_channels = int(target_channels)
        self.target = target
        self.target_fn = target_fn
        self.time_inputs: list[list[float]] = []  # the time inputs of every call, in call order

    def _split(self, inputs: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.time_inputs.append(timesteps.tolist())
        ct = self.target_channels
        return inputs[:, :ct], (inputs[:, ct:] if inputs.shape[1] > ct else None)

    def _x0(self, source: torch.Tensor | None) -> torch.Tensor:
        if self.target is not None:
            return self.target
        if source is None:
            raise ValueError("a target_fn oracle needs the source: build the DRDDNet with noise_conditioned=True.")
        return self.target_fn(source)


class OracleResidualNet(_OracleBase):
    """Input ``cat([x_t, source])``; returns the true residual ``anchor(source) - x0``."""

    def forward(self, inputs: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        _, source = self._split(inputs, timesteps)
        return source_anchor(source, self.target_channels) - self._x0(source)


class OracleNoiseNet(_OracleBase):
    """Input ``x_t`` (or ``cat([x_t, source])``); returns the consistent noise ``(x_t - x0) / β̄_t``.

    β̄_t is recovered from the time input ``1000 * β̄_t / noise_level`` (METHOD.md §10.1 item 4).
    """

    def __init__(self, target_channels: int, target=None, target_fn=None, noise_level: float = 1.0) -> None:
        super().__init__(target_channels, target, target_fn)
        self.noise_level = float(noise_level)

    def forward(self, inputs: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        x, source = self._split(inputs, timesteps)
        noise_coef = timesteps.to(x.dtype).view(-1, *[1] * (x.ndim - 1)) * self.noise_level / 1000.0
        return (x - self._x0(source)) / noise_coef


class OracleCoupledNet(CoupledNet):
    """Coupled oracle: the true residual, and the noise recovered from ``x_t = x0 + ᾱ_t r + β̄_t ε`` (input t).

    The coefficients come from :class:`Reference`; ``states`` records every (x_t, t) the net was called with.
    """

    def __init__(self, ref: Reference, target_channels: int, target=None, target_fn=None) -> None:
        super().__init__(OracleResidualNet(target_channels, target, target_fn), target_channels)
        self.ref = ref
        self.states: list[tuple[torch.Tensor, int]] = []

    def forward(self, x: torch.Tensor, source: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        residual = self.net(torch.cat([x, source], dim=1), timesteps)
        t = [int(round(v)) for v in timesteps.tolist()]
        self.states.append((x.clone(), t[0]))
        shape = (-1, *[1] * (x.ndim - 1))
        r_coef = torch.tensor([self.ref.residual(v) for v in t], dtype=x.dtype).view(shape)
        n_coef = torch.tensor([self.ref.noise(v) for v in t], dtype=x.dtype).view(shape)
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
        target_fn: pointwise map source (B, Cs, *spatial) -> x0 (B, Ct, *spatial); forces a source-conditioned
            noise net.
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
