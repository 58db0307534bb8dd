"""Seeded procedural head phantom: paired T1w MR / T2w MR / CBCT / CT / body mask, and the on-disk phantom dataset."""

from __future__ import annotations

from drdd_med.data.phantom.generate import (
    DEFAULT_SHAPE,
    DEFAULT_SPACING_MM,
    SOURCE_FILES,
    make_phantom_ct,
    make_phantom_pair,
    make_phantom_subject,
    phantom_spec,
    split_counts,
    write_phantom_dataset,
)
from drdd_med.data.phantom.tissues import TISSUE_INDEX, TISSUES
from drdd_med.data.phantom.variation import VARIATIONS

__all__ = [
    "DEFAULT_SHAPE", "DEFAULT_SPACING_MM", "SOURCE_FILES", "TISSUES", "TISSUE_INDEX", "VARIATIONS", "make_phantom_ct",
    "make_phantom_pair", "make_phantom_subject", "phantom_spec", "split_counts", "write_phantom_dataset",
]
