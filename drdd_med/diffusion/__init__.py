"""DRDD diffusion math: schedules, forward processes, reverse steps and sampling loops (torch + MONAI only)."""

from __future__ import annotations

from drdd_med.diffusion.anchor import residual_target, source_anchor
from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.sampling import sample_coupled, sample_drdd
from drdd_med.diffusion.scheduler import RESIDUAL_SCHEDULES, TIME_SCALE, DRDDScheduler

__all__ = [
    "DRDDScheduler",
    "CoupledScheduler",
    "RESIDUAL_SCHEDULES",
    "TIME_SCALE",
    "sample_drdd",
    "sample_coupled",
    "source_anchor",
    "residual_target",
]
