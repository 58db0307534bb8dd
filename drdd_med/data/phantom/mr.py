"""MR synthesis from tissue fractions: a T1-weighted spoiled gradient echo with realism layers.

Signal (EVALUATION.md section 4.3): S = PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE / T2*), E1 = exp(-TR / T1),
normalised by the brightest tissue. Realism layers (section 4.4): partial volume (from the fractions), a small
rigid misregistration to the CT, a smooth multiplicative bias field of 20-40 % peak-to-peak, Rician noise
(magnitude of complex Gaussian noise, so the background is Rayleigh) and a random global intensity scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from drdd_med.data.phantom.tissues import sample_mr_parameters

__all__ = ["gre_signal", "synthesize_mr"]


def gre_signal(t1_ms: np.ndarray, t2s_ms: np.ndarray, pd: np.ndarray, tr_ms: float, te_ms: float, flip_deg: float) -> np.ndarray:
    """Spoiled gradient-echo steady-state signal per tissue (arbitrary units, PD = 1 water)."""
    e1 = np.exp(-tr_ms / t1_ms)
    alpha = np.deg2rad(flip_deg)
    return pd * np.sin(alpha) * (1.0 - e1) / (1.0 - np.cos(alpha) * e1) * np.exp(-te_ms / t2s_ms)


def _rigid_resample(image: np.ndarray, spacing_mm: np.ndarray, rotation_deg: np.ndarray, translation_mm: np.ndarray) -> np.ndarray:
    """Move the image content by a small rigid transform about the grid centre (linear interpolation)."""
    ax, ay, az = np.deg2rad(rotation_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rot = rz @ ry @ rx
    # output voxel o -> input voxel i = S^-1 R^T (S (o - c) - t) + c, with S = diag(spacing), c = centre
    scale = np.diag(spacing_mm)
    matrix = np.linalg.inv(scale) @ rot.T @ scale
    centre = (np.asarray(image.shape) - 1) / 2.0
    offset = centre - matrix @ centre - np.linalg.inv(scale) @ rot.T @ translation_mm
    return ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="nearest")


def _bias_field(rng: np.random.Generator, shape: tuple[int, ...], body: np.ndarray, peak_to_peak: float) -> np.ndarray:
    """exp of a random quadratic polynomial, scaled so that max/min over the body equals 1 + peak_to_peak."""
    coords = np.meshgrid(*[np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape], indexing="ij")
    terms = [*coords, *(c * c for c in coords), coords[0] * coords[1], coords[1] * coords[2], coords[0] * coords[2]]
    poly = sum(float(w) * t for w, t in zip(rng.normal(size=len(terms)), terms))
    inside = poly[body] if body.any() else poly.ravel()
    lo, hi = float(inside.min()), float(inside.max())
    unit = (poly - lo) / max(hi - lo, 1e-6) - 0.5
    return np.exp(np.log1p(peak_to_peak) * unit).astype(np.float32)


def synthesize_mr(fractions: np.ndarray, rng: np.random.Generator, spacing_mm: tuple[float, float, float],
                  body: np.ndarray, tr_ms: float = 10.0, te_ms: float = 4.0, flip_deg: float = 15.0) -> tuple[np.ndarray, dict[str, Any]]:
    """T1-weighted MR (arbitrary units) from tissue fractions, registered to the CT grid up to a small rigid motion.

    Args:
        fractions: (num_tissues, X, Y, Z) float32 in [0, 1].
        rng: the subject's generator.
        spacing_mm: voxel size, mm.
        body: (X, Y, Z) bool body mask (used to scale the bias field).
        tr_ms: repetition time.
        te_ms: echo time.
        flip_deg: flip angle.

    Returns:
        ``(mr, params)``: (X, Y, Z) float32 non-negative, and the drawn parameters (tissue parameters, motion,
        bias peak-to-peak, noise level, global scale).
    """
    tissue = sample_mr_parameters(rng)
    signal = gre_signal(tissue["t1_ms"], tissue["t2s_ms"], tissue["pd"], tr_ms, te_ms, flip_deg)
    signal = signal / signal.max()
    mr = np.tensordot(signal.astype(np.float32), fractions, axes=1)
    rotation_deg, translation_mm = rng.uniform(-1.5, 1.5, size=3), rng.uniform(-1.5, 1.5, size=3)
    mr = _rigid_resample(mr, np.asarray(spacing_mm, dtype=float), rotation_deg, translation_mm)
    peak_to_peak = float(rng.uniform(0.2, 0.4))
    mr *= _bias_field(rng, mr.shape, body, peak_to_peak)
    sigma = float(rng.uniform(0.008, 0.025))
    mr = np.hypot(mr + rng.normal(0.0, sigma, mr.shape).astype(np.float32), rng.normal(0.0, sigma, mr.shape).astype(np.float32))
    scale = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))) * 1000.0
    params = {"tr_ms": tr_ms, "te_ms": te_ms, "flip_deg": flip_deg, "signal_per_tissue": signal.tolist(),
              "t1_ms": tissue["t1_ms"].tolist(), "t2s_ms": tissue["t2s_ms"].tolist(), "pd": tissue["pd"].tolist(),
              "misregistration_rotation_deg": rotation_deg.tolist(), "misregistration_translation_mm": translation_mm.tolist(),
              "bias_peak_to_peak": peak_to_peak, "rician_sigma": sigma, "intensity_scale": scale}
    return (mr * scale).astype(np.float32), params
