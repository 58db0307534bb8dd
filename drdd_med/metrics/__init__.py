"""Image metrics: SynthRAD definitions on HU volumes and MONAI/Ignite adapters.

The package re-exports the public names of :mod:`drdd_med.metrics.functional`; the Ignite adapters stay in
:mod:`drdd_med.metrics.handlers` so that importing the package does not import Ignite.
"""

from __future__ import annotations

from drdd_med.metrics import functional
from drdd_med.metrics.functional import *  # noqa: F403

__all__ = list(functional.__all__)
