"""MR/CT transforms: intensity maps to [-1, 1] with explicit inverses, 2.5D reshapes, and ready-made pipelines.

``drdd_med.transforms.pipelines`` holds the ``Compose`` builders (imported on demand: it pulls in the readers).
"""

from __future__ import annotations

from drdd_med.transforms.array import (
    UNIT_WINDOW_KEY,
    MiddleSlice,
    PercentileToUnit,
    SlicesToChannels,
    UnitToWindow,
    WindowToUnit,
    percentile_window,
    unit_to_window,
    window_to_unit,
)
from drdd_med.transforms.dictionary import (
    DomainIndexd,
    MiddleSliced,
    NormalizeByDomaind,
    NormalizeToUnitd,
    PercentileToUnitd,
    SlicesToChannelsd,
    UnitToWindowd,
    WindowToUnitd,
    normalizer,
)

__all__ = [
    "UNIT_WINDOW_KEY", "DomainIndexd", "MiddleSlice", "MiddleSliced", "NormalizeByDomaind", "NormalizeToUnitd",
    "PercentileToUnit", "PercentileToUnitd", "SlicesToChannels", "SlicesToChannelsd", "UnitToWindow", "UnitToWindowd",
    "WindowToUnit", "WindowToUnitd", "normalizer", "percentile_window", "unit_to_window", "window_to_unit",
]
