"""CT synthesis from tissue fractions: CT numbers per tissue, bone texture, partial volume and noise."""

from __future__ import annotations

import numpy as np

from drdd_med.data.phantom.tissues import TISSUE_INDEX, sample_ct_numbers
from drdd_med.keys import HU_MAX, HU_MIN

__all__ = ["synthesize_ct"]


def synthesize_ct(fractions: np.ndarray, rng: np.random.Generator, texture: np.ndarray) -> tuple[np.ndarray, dict]:
    """CT in HU from tissue fractions.

    The voxel value is the fraction-weighted mean of the tissues' CT numbers (linear partial volume), bone
    numbers are modulated by a smooth texture field, and Gaussian noise of 5-15 HU is added. The result is rounded
    to integers, as a stored CT would be, and clipped to [HU_MIN, HU_MAX].

    Args:
        fractions: (num_tissues, X, Y, Z) float32 in [0, 1], summing to 1 per voxel.
        rng: the subject's generator.
        texture: (X, Y, Z) zero-mean unit-std smooth field.

    Returns:
        ``(ct, params)``: (X, Y, Z) float32 HU with integer values, and the drawn CT numbers / noise level.
    """
    hu = sample_ct_numbers(rng)
    noise_hu = float(rng.uniform(5.0, 15.0))
    ct = np.tensordot(hu.astype(np.float32), fractions, axes=1)
    bone = TISSUE_INDEX["cancellous_bone"], TISSUE_INDEX["cortical_bone"]
    ct += texture * (0.15 * hu[bone[0]] * fractions[bone[0]] + 0.05 * hu[bone[1]] * fractions[bone[1]])
    ct += rng.normal(0.0, noise_hu, size=ct.shape).astype(np.float32)
    ct = np.clip(np.rint(ct), HU_MIN, HU_MAX).astype(np.float32)
    return ct, {"hu_per_tissue": hu.tolist(), "noise_hu": noise_hu}
