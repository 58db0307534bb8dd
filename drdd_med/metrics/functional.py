"""SynthRAD image metrics (2023 and 2025 definitions) and drdd_med's HU-class diagnostics, in NumPy/SciPy.

All functions take the real CT, the synthetic CT and a body mask on the same grid, in HU, and compute in float64.
They are reimplemented from the published definitions (EVALUATION.md §1), not copied from the challenge code.
The SynthRAD numbers are only comparable to the leaderboards when computed on whole 3D volumes on the original grid;
values computed per 2D slice, per patch or on [-1, 1] data are "non-SynthRAD".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.signal import fftconvolve
from skimage.metrics import structural_similarity

__all__ = [
    "SYNTHRAD2023_RANGE",
    "SYNTHRAD2025_RANGE",
    "MS_SSIM_WEIGHTS",
    "masked_mae",
    "masked_psnr",
    "masked_ssim",
    "masked_ms_ssim",
    "synthrad2023_metrics",
    "synthrad2025_metrics",
    "through_plane_consistency",
    "through_plane_difference",
    "tissue_mae",
]

logger = logging.getLogger(__name__)

#: HU dynamic range of SynthRAD2023 (width 4024).
SYNTHRAD2023_RANGE = (-1024.0, 3000.0)
#: HU dynamic range of SynthRAD2025 since May 2025 (width 4095).
SYNTHRAD2025_RANGE = (-1024.0, 3071.0)
#: SynthRAD2025 MS-SSIM scale weights (5 levels).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN = 7  # uniform window side; _CROP voxels per face have windows that leave the volume
_CROP = (_WIN - 1) // 2
_K1, _K2 = 0.01, 0.03
_MIN_MS_SSIM_SIZE = 97
_AIR_BELOW_HU, _BONE_ABOVE_HU = -400.0, 300.0


def _prepare(ct, sct, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 copies of ct and sct and a boolean mask (``mask > 0``; all ones when None), shape-checked."""
    ct = np.array(ct, dtype=np.float64)
    sct = np.array(sct, dtype=np.float64)
    if ct.shape != sct.shape or ct.ndim not in (2, 3):
        raise ValueError(f"ct and sct must be 2D or 3D arrays of the same shape, got {ct.shape} and {sct.shape}.")
    mask = np.ones(ct.shape, dtype=bool) if mask is None else np.asarray(mask) > 0
    if mask.shape != ct.shape:
        raise ValueError(f"mask shape {mask.shape} differs from ct shape {ct.shape}; resample the mask first.")
    if not (np.all(np.isfinite(ct)) and np.all(np.isfinite(sct))):
        raise ValueError("ct or sct contains NaN or inf; fix the inputs before computing metrics.")
    return ct, sct, mask


def _crop(a: np.ndarray) -> np.ndarray:
    return a[tuple(slice(_CROP, n - _CROP) for n in a.shape)]


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    if not mask.any():
        logger.debug("empty mask: metric is NaN")
        return float("nan")
    return float(values[mask].mean())


def masked_mae(ct, sct, mask=None) -> float:
    """Mean absolute error in HU inside the mask, without clipping: Σ|ct·m − sct·m| / Σm."""
    ct, sct, mask = _prepare(ct, sct, mask)
    return _masked_mean(np.abs(ct - sct), mask)


def masked_psnr(ct, sct, mask=None, hu_range: Sequence[float] = SYNTHRAD2025_RANGE) -> float:
    """PSNR in dB over the mask after clipping both volumes to ``hu_range``; data range = its width.

    Returns ``inf`` for identical volumes and NaN for an empty mask.
    """
    ct, sct, mask = _prepare(ct, sct, mask)
    lo, hi = hu_range
    mse = _masked_mean((np.clip(ct, lo, hi) - np.clip(sct, lo, hi)) ** 2, mask)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10((hi - lo) ** 2 / mse))


def _shift_to_range(ct, sct, mask, hu_range) -> tuple[np.ndarray, np.ndarray]:
    """Clip to ``hu_range``, set voxels outside the mask to its minimum, and shift so the minimum is 0."""
    lo, hi = hu_range
    ct = np.where(mask, np.clip(ct, lo, hi), lo) - lo
    sct = np.where(mask, np.clip(sct, lo, hi), lo) - lo
    return ct, sct


def masked_ssim(ct, sct, mask=None, hu_range: Sequence[float] = SYNTHRAD2023_RANGE) -> float:
    """Masked SSIM as defined by SynthRAD2023 (2D or 3D).

    Both volumes are clipped to ``hu_range``, set to its minimum outside the mask and shifted to [0, width];
    skimage's SSIM map (7-voxel uniform window, K1 = 0.01, K2 = 0.03, sample covariance) is cropped by 3 voxels per
    face, as is the mask, and averaged over the cropped mask.
    """
    ct, sct, mask = _prepare(ct, sct, mask)
    if min(ct.shape) < _WIN:
        raise ValueError(f"SSIM needs at least {_WIN} voxels per axis, got shape {ct.shape}.")
    ct, sct = _shift_to_range(ct, sct, mask, hu_range)
    _, ssim_map = structural_similarity(ct, sct, data_range=hu_range[1] - hu_range[0], full=True,
                                        win_size=_WIN, gaussian_weights=False, use_sample_covariance=True)
    return _masked_mean(_crop(ssim_map), _crop(mask))


def _ms_ssim_level(x: np.ndarray, y: np.ndarray, mask: np.ndarray, weight: float, data_range: float) -> float:
    """Mean over the cropped mask of L^w · C^w · S^w at one scale (SynthRAD2025 definition)."""
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    c3 = c2 / 2.0
    cov_norm = _WIN**x.ndim / (_WIN**x.ndim - 1.0)  # sample covariance
    mu_x, mu_y = uniform_filter(x, _WIN), uniform_filter(y, _WIN)
    var_x = np.clip(cov_norm * (uniform_filter(x * x, _WIN) - mu_x**2), 0, None)
    var_y = np.clip(cov_norm * (uniform_filter(y * y, _WIN) - mu_y**2), 0, None)
    cov_xy = cov_norm * (uniform_filter(x * y, _WIN) - mu_x * mu_y)
    sigma_x, sigma_y = np.sqrt(var_x), np.sqrt(var_y)
    lum = np.clip((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1), 0, None)
    con = np.clip((2 * sigma_x * sigma_y + c2) / (var_x + var_y + c2), 0, None)
    struct = np.clip((cov_xy + c3) / (sigma_x * sigma_y + c3), 0, None)
    # As in the reference code, the luminance exponent is the scale weight at every level (not only the coarsest).
    level_map = lum**weight * con**weight * struct**weight
    return _masked_mean(_crop(level_map), _crop(mask))


def masked_ms_ssim(ct, sct, mask=None, hu_range: Sequence[float] = SYNTHRAD2025_RANGE) -> float:
    """Masked multi-scale SSIM as defined by SynthRAD2025 (5 levels, uniform 7-voxel window).

    Volumes are clipped, set to the range minimum outside the mask, shifted to [0, width] and edge-padded to at least
    97 voxels per axis; each level's map is averaged over the cropped mask, and the product of the clipped level
    values is returned. On volumes much smaller than 97 voxels per axis the result is dominated by the padding.
    """
    ct, sct, mask = _prepare(ct, sct, mask)
    x, y = _shift_to_range(ct, sct, mask, hu_range)
    missing = [max(_MIN_MS_SSIM_SIZE - n, 0) for n in x.shape]
    pad = [(extra // 2, extra - extra // 2) for extra in missing]
    x, y = np.pad(x, pad, mode="edge"), np.pad(y, pad, mode="edge")
    m = np.pad(mask, pad, mode="edge")
    box = np.full((2,) * x.ndim, 0.5**x.ndim)
    result = 1.0
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        value = _ms_ssim_level(x, y, m, weight, hu_range[1] - hu_range[0])
        result *= float(np.clip(value, 0.0, 1.0)) if np.isfinite(value) else float("nan")
        if level < len(MS_SSIM_WEIGHTS) - 1:
            step = (slice(None, None, 2),) * x.ndim
            x, y, m = fftconvolve(x, box, mode="same")[step], fftconvolve(y, box, mode="same")[step], m[step]
    return result


def synthrad2023_metrics(ct, sct, mask=None) -> dict[str, float]:
    """SynthRAD2023 image metrics.

    Args:
        ct: real CT, (X, Y, Z) (or 2D) array in HU.
        sct: synthetic CT on the same grid, in HU.
        mask: body mask, binarised as ``mask > 0``; None for the whole volume.

    Returns:
        ``{"mae": HU, no clipping; "psnr": dB, range [-1024, 3000]; "ssim": masked SSIM}``.

    Example:
        >>> ct = np.zeros((8, 8, 8)); synthrad2023_metrics(ct, ct + 100.0, ct + 1)["mae"]
        100.0
    """
    ct, sct, mask = _prepare(ct, sct, mask)
    return {
        "mae": masked_mae(ct, sct, mask),
        "psnr": masked_psnr(ct, sct, mask, SYNTHRAD2023_RANGE),
        "ssim": masked_ssim(ct, sct, mask, SYNTHRAD2023_RANGE),
    }


def synthrad2025_metrics(ct, sct, mask=None) -> dict[str, float]:
    """SynthRAD2025 image metrics (version of May 2025, range [-1024, 3071]).

    Arguments as in :func:`synthrad2023_metrics`; both volumes are first set to -1024 outside the mask, as in the
    reference.

    Returns:
        ``{"mae": HU, no clipping; "psnr": dB; "ms_ssim": masked MS-SSIM}``.
    """
    ct, sct, mask = _prepare(ct, sct, mask)
    lo = SYNTHRAD2025_RANGE[0]
    ct, sct = np.where(mask, ct, lo), np.where(mask, sct, lo)
    return {
        "mae": masked_mae(ct, sct, mask),
        "psnr": masked_psnr(ct, sct, mask, SYNTHRAD2025_RANGE),
        "ms_ssim": masked_ms_ssim(ct, sct, mask, SYNTHRAD2025_RANGE),
    }


def tissue_mae(ct, sct, mask=None) -> dict[str, float]:
    """drdd_med diagnostics (not SynthRAD): MAE in HU classes of the real CT, and the mean error.

    Classes of the real CT inside the body mask: air/lung < -400 HU, soft tissue -400..300 HU (inclusive), bone
    > 300 HU. An empty class gives NaN.

    Returns:
        ``{"mae_air", "mae_soft_tissue", "mae_bone": HU; "mean_error": mean(sct - ct) in HU (bias);
        "fraction_air", "fraction_soft_tissue", "fraction_bone": share of the mask's voxels}``.
    """
    ct, sct, mask = _prepare(ct, sct, mask)
    classes = {
        "air": mask & (ct < _AIR_BELOW_HU),
        "soft_tissue": mask & (ct >= _AIR_BELOW_HU) & (ct <= _BONE_ABOVE_HU),
        "bone": mask & (ct > _BONE_ABOVE_HU),
    }
    error = sct - ct
    result = {f"mae_{name}": _masked_mean(np.abs(error), sub) for name, sub in classes.items()}
    result["mean_error"] = _masked_mean(error, mask)
    total = max(int(mask.sum()), 1)
    result.update({f"fraction_{name}": float(sub.sum()) / total for name, sub in classes.items()})
    return result


def through_plane_difference(volume, mask=None, axis: int = -1) -> float:
    """Mean |v[k + 1] - v[k]| along ``axis`` over the pairs of adjacent voxels that are both inside the mask.

    Args:
        volume: 2D or 3D array (HU).
        mask: body mask (``mask > 0``); None for every voxel.
        axis: the slice axis (the axial axis of the grid, so that slice-by-slice models show their seams).

    Returns:
        The mean absolute difference in the volume's units; NaN when no pair lies inside the mask.
    """
    volume, _, mask = _prepare(volume, volume, mask)
    return _adjacent_difference(volume, _adjacent_pairs(mask, axis), axis)


def _adjacent_pairs(mask: np.ndarray, axis: int) -> np.ndarray:
    """``pairs[k] = mask[k] & mask[k + 1]`` along ``axis``."""
    return np.logical_and(np.delete(mask, -1, axis=axis), np.delete(mask, 0, axis=axis))


def _adjacent_difference(volume: np.ndarray, pairs: np.ndarray, axis: int) -> float:
    return _masked_mean(np.abs(np.diff(volume, axis=axis)), pairs)


def through_plane_consistency(ct, sct, mask=None, axis: int = -1) -> dict[str, float]:
    """drdd_med diagnostic (not SynthRAD): how much the sCT changes from slice to slice, relative to the CT.

    A model that translates axial slices one at a time can give each slice its own offset; the sCT then changes
    more between adjacent slices than the CT does. Both volumes are scored with :func:`through_plane_difference`
    on the same mask and axis. A blurred sCT changes less than the CT in every direction, so the through-plane
    ratio alone mixes blur with stripes; the stripe ratio divides it by the same ratio taken within the slices.

    Returns:
        ``{"through_plane_sct", "through_plane_ct": mean |difference| of adjacent slices in HU;
        "through_plane_ratio": sct / ct (1 = as smooth across slices as the CT; NaN when the CT's value is 0);
        "in_plane_ratio": the same sct / ct ratio for neighbours within the slices (mean over the other axes);
        "stripe_ratio": through_plane_ratio / in_plane_ratio (1 = no stripes; > 1 = slices disagree more than
        the sCT's in-plane texture explains)}``.
    """
    ct, sct, mask = _prepare(ct, sct, mask)
    axis = axis % ct.ndim
    pairs = _adjacent_pairs(mask, axis)
    sct_value, ct_value = _adjacent_difference(sct, pairs, axis), _adjacent_difference(ct, pairs, axis)
    ratio = sct_value / ct_value if ct_value > 0 else float("nan")
    in_plane = []
    for other in (a for a in range(ct.ndim) if a != axis):
        other_pairs = _adjacent_pairs(mask, other)
        ct_other = _adjacent_difference(ct, other_pairs, other)
        in_plane.append(_adjacent_difference(sct, other_pairs, other) / ct_other if ct_other > 0 else float("nan"))
    finite = [r for r in in_plane if np.isfinite(r)]  # an axis along which the CT never changes says nothing
    in_plane_ratio = float(np.mean(finite)) if finite else float("nan")
    stripe = ratio / in_plane_ratio if in_plane_ratio > 0 else float("nan")
    return {"through_plane_sct": sct_value, "through_plane_ct": ct_value, "through_plane_ratio": ratio,
            "in_plane_ratio": in_plane_ratio, "stripe_ratio": stripe}
