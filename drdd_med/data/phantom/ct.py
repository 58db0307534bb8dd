"""CT synthesis from tissue fractions: CT numbers per tissue, bone texture, partial volume and noise."""

from __future__ import annotations

import numpy as np

from drdd_med.data.phantom.tissues import TISSUE_INDEX, sample_ct_numbers
from drdd_med.keys import HU_MAX, HU_MIN

__all__ = ["ct_numbers_image", "synthesize_ct"]

_BONE = TISSUE_INDEX["cancellous_bone"], TISSUE_INDEX["cortical_bone"]


def ct_numbers_image(fractions: np.ndarray, hu: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """Noise-free HU image: the fraction-weighted mean of the tissues' CT numbers, bone modulated by ``texture``.

    Args:
        fractions: (num_tissues, X, Y, Z) float32 in [0, 1], summing to 1 per voxel.
        hu: (num_tissues,) the subject's CT number per tissue.
        texture: (X, Y, Z) zero-mean unit-std smooth field.

    Returns:
        (X, Y, Z) float32 HU (not rounded, not clipped).
    """
    ct = np.tensordot(hu.astype(np.float32), fractions, axes=1)
    ct += texture * (0.15 * hu[_BONE[0]] * fractions[_BONE[0]] + 0.05 * hu[_BONE[1]] * fractions[_BONE[1]])
    return ct


def synthesize_ct(fractions: np.ndarray, rng: np.random.Generator, texture: np.ndarray,
                  bone_density: float = 1.0) -> tuple[np.ndarray, dict]:
    """CT in HU from tissue fractions.

    The voxel value is :func:`ct_numbers_image` (linear partial volume, bone texture) plus Gaussian noise of
    5-15 HU, rounded to integers, as a stored CT would be, and clipped to [HU_MIN, HU_MAX].

    Args:
        fractions: (num_tissues, X, Y, Z) float32 in [0, 1], summing to 1 per voxel.
        rng: the subject's generator.
        texture: (X, Y, Z) zero-mean unit-std smooth field.
        bone_density: factor on the drawn CT numbers of cancellous and cortical bone.

    Returns:
        ``(ct, params)``: (X, Y, Z) float32 HU with integer values, and the drawn CT numbers / noise level.
    """
    hu = sample_ct_numbers(rng)
    if bone_density != 1.0:
        hu[list(_BONE)] *= bone_density
    noise_hu = float(rng.uniform(5.0, 15.0))
    ct = ct_numbers_image(fractions, hu, texture)
    ct += rng.normal(0.0, noise_hu, size=ct.shape).astype(np.float32)
    ct = np.clip(np.rint(ct), HU_MIN, HU_MAX).astype(np.float32)
    return ct, {"hu_per_tissue": hu.tolist(), "noise_hu": noise_hu}
