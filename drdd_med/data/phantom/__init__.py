"""Seeded procedural head phantom: paired T1w MR / CT / body mask, and the on-disk phantom dataset."""

from __future__ import annotations

from drdd_med.data.phantom.generate import (
    DEFAULT_SHAPE,
    DEFAULT_SPACING_MM,
    make_phantom_ct,
    make_phantom_pair,
    phantom_spec,
    split_counts,
    write_phantom_dataset,
)
from drdd_med.data.phantom.tissues import TISSUE_INDEX, TISSUES

__all__ = [
    "DEFAULT_SHAPE", "DEFAULT_SPACING_MM", "TISSUES", "TISSUE_INDEX", "make_phantom_ct", "make_phantom_pair",
    "phantom_spec", "split_counts", "write_phantom_dataset",
]
