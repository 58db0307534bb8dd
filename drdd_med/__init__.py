"""drdd_med: Decoupled Residual Denoising Diffusion (DRDD) for medical image translation, built on MONAI.

Public API::

    from drdd_med import DRDDScheduler, DRDDNet, DRDDInferer, build_drdd_net
"""

from __future__ import annotations

__version__ = "0.1.0"

from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.inferers.inferer import DRDDInferer
from drdd_med.networks.drdd_net import DRDDNet
from drdd_med.networks.factory import build_drdd_net

__all__ = ["DRDDScheduler", "DRDDNet", "DRDDInferer", "build_drdd_net", "__version__"]
