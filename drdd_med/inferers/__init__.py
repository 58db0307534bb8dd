"""Inferers: DRDD two-stage sampling and the baselines' inferers (MONAI ``Inferer`` call convention)."""

from __future__ import annotations

from drdd_med.inferers.baselines import CoupledInferer, RegressionInferer
from drdd_med.inferers.inferer import DRDDInferer, check_noise_level, ensemble

__all__ = ["DRDDInferer", "CoupledInferer", "RegressionInferer", "check_noise_level", "ensemble"]
