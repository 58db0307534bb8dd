"""The coupled RDDM process (METHOD.md §8): residual and noise removed together, one timestep for both.

This is the baseline DRDD is compared with. It shares DRDD's coefficients (``residual_coef`` ᾱ_t, ``noise_coef``
β̄_t and hence ``sigma_n``), so the two processes have the same endpoint ``source + sigma_n * z`` and differ only
in the path: DRDD moves along the L-shaped path (noise leg, then residual leg), RDDM along both axes at once.
"""

from __future__ import annotations

import torch

from drdd_med.diffusion.anchor import source_anchor
from drdd_med.diffusion.scheduler import DRDDScheduler

__all__ = ["CoupledScheduler"]


class CoupledScheduler(DRDDScheduler):
    """Forward process ``x_t = x0 + ᾱ_t (anchor(source) - x0) + β̄_t ε`` and its DDIM reverse step.

    The network receives one time input, the float timestep ``t`` itself (``time_input_coupled``), since ᾱ_t and
    β̄_t are both functions of it. All constructor arguments are those of :class:`DRDDScheduler`.
    """

    def time_input_coupled(self, t: torch.Tensor | int) -> torch.Tensor:
        """Coupled-network time input: the timestep as a float tensor shaped like ``t``."""
        return torch.as_tensor(t, device=self.noise_coef.device).float()

    def add_coupled(
        self, original_samples: torch.Tensor, source: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """Coupled forward process; arguments as in :meth:`add_residual`, with ε scaled by β̄_t instead of sigma_n."""
        anchor = source_anchor(source, original_samples.shape[1])
        r_coef = self._gather(self.residual_coef, timesteps, original_samples)
        n_coef = self._gather(self.noise_coef, timesteps, original_samples)
        return original_samples + r_coef * (anchor - original_samples) + n_coef * noise

    def step_coupled(self, residual_pred: torch.Tensor, noise_pred: torch.Tensor, t: int, s: int, sample: torch.Tensor,
                     eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """RDDM reverse step ``x - (ᾱ_t - ᾱ_s) r̂ - (β̄_t - sqrt(β̄_s² - σ²)) ε̂ + σ ξ``.

        It is :meth:`step_residual` with ``residual_pred`` followed by :meth:`step_noise` with ``noise_pred``, both
        from ``t`` to ``s``; ``eta`` and ``generator`` as in :meth:`step_noise`.
        """
        x = self.step_residual(residual_pred, t, s, sample)
        return self.step_noise(noise_pred, t, s, x, eta=eta, generator=generator)
