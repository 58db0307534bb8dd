"""MR synthesis from tissue fractions: T1-weighted spoiled gradient echo and T2-weighted turbo spin echo.

T1w signal (EVALUATION.md section 4.3): S = PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE / T2*), E1 = exp(-TR / T1);
T2w signal: S = PD (1 - E1) exp(-TE / T2); each normalised by the brightest tissue. Realism layers (section 4.4):
partial volume (from the fractions), a small rigid misregistration to the CT, a smooth multiplicative bias field
(20-40 % peak-to-peak by default), Rician noise (magnitude of complex Gaussian noise, so the background is Rayleigh)
and a random global intensity scale. The ranges come from a :class:`~drdd_med.data.phantom.variation.Variation`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drdd_med.data.phantom.anatomy import rigid_resample
from drdd_med.data.phantom.tissues import sample_mr_parameters
from drdd_med.data.phantom.variation import VARIATIONS, Variation, draw

__all__ = ["gre_signal", "synthesize_mr", "synthesize_t2w", "tse_signal"]


def tse_signal(t1_ms: np.ndarray, t2_ms: np.ndarray, pd: np.ndarray, tr_ms: float, te_ms: float) -> np.ndarray:
    """Spin-echo signal per tissue, S = PD (1 - exp(-TR / T1)) exp(-TE / T2) (echo-train effects ignored)."""
    return pd * (1.0 - np.exp(-tr_ms / t1_ms)) * np.exp(-te_ms / t2_ms)


def gre_signal(t1_ms: np.ndarray, t2s_ms: np.ndarray, pd: np.ndarray, tr_ms: float, te_ms: float, flip_deg: float) -> np.ndarray:
    """Spoiled gradient-echo steady-state signal per tissue (arbitrary units, PD = 1 water)."""
    e1 = np.exp(-tr_ms / t1_ms)
    alpha = np.deg2rad(flip_deg)
    return pd * np.sin(alpha) * (1.0 - e1) / (1.0 - np.cos(alpha) * e1) * np.exp(-te_ms / t2s_ms)


def _bias_field(rng: np.random.Generator, shape: tuple[int, ...], body: np.ndarray, peak_to_peak: float) -> np.ndarray:
    """exp of a random quadratic polynomial, scaled so that max/min over the body equals 1 + peak_to_peak."""
    coords = np.meshgrid(*[np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape], indexing="ij")
    terms = [*coords, *(c * c for c in coords), coords[0] * coords[1], coords[1] * coords[2], coords[0] * coords[2]]
    poly = sum(float(w) * t for w, t in zip(rng.normal(size=len(terms)), terms))
    inside = poly[body] if body.any() else poly.ravel()
    lo, hi = float(inside.min()), float(inside.max())
    unit = (poly - lo) / max(hi - lo, 1e-6) - 0.5
    return np.exp(np.log1p(peak_to_peak) * unit).astype(np.float32)


def _field_strength(rng: np.random.Generator, v: Variation, tissue: dict[str, np.ndarray],
                    params: dict[str, Any]) -> None:
    """Draw the field strength (when the preset offers several) and rescale the 1.5 T relaxation times in place.

    Approximate power laws: T1 grows as B0^0.35 and T2* shrinks as B0^-0.6; T2 is kept.
    """
    if len(v.field_t) < 2:
        return
    field = float(rng.choice(v.field_t))
    params["field_t"] = field
    tissue["t1_ms"] = tissue["t1_ms"] * (field / 1.5) ** 0.35
    if "t2s_ms" in tissue:
        tissue["t2s_ms"] = tissue["t2s_ms"] * (1.5 / field) ** 0.6


def _acquire(clean: np.ndarray, rng: np.random.Generator, spacing_mm: tuple[float, float, float], body: np.ndarray,
             v: Variation) -> tuple[np.ndarray, dict[str, Any]]:
    """The realism layers of one MR acquisition: misregistration, bias field, Rician noise, global scale."""
    rotation_deg, translation_mm = rng.uniform(-1.5, 1.5, size=3), rng.uniform(-1.5, 1.5, size=3)
    mr = rigid_resample(clean, np.asarray(spacing_mm, dtype=float), rotation_deg, translation_mm)
    peak_to_peak = float(rng.uniform(*v.bias_peak_to_peak))
    mr *= _bias_field(rng, mr.shape, body, peak_to_peak)
    sigma = float(rng.uniform(*v.rician_sigma))
    mr = np.hypot(mr + rng.normal(0.0, sigma, mr.shape).astype(np.float32), rng.normal(0.0, sigma, mr.shape).astype(np.float32))
    scale = float(np.exp(rng.uniform(*np.log(v.intensity_scale)))) * 1000.0
    params = {"misregistration_rotation_deg": rotation_deg.tolist(),
              "misregistration_translation_mm": translation_mm.tolist(), "bias_peak_to_peak": peak_to_peak, "rician_sigma": sigma, "intensity_scale": scale}
    return (mr * scale).astype(np.float32), params


def synthesize_mr(fractions: np.ndarray, rng: np.random.Generator, spacing_mm: tuple[float, float, float],
                  body: np.ndarray, variation: Variation = VARIATIONS["default"]) -> tuple[np.ndarray, dict[str, Any]]:
    """T1-weighted spoiled gradient echo (arbitrary units), registered to the CT grid up to a small rigid motion.

    Args:
        fractions: (num_tissues, X, Y, Z) float32 in [0, 1].
        rng: the subject's generator.
        spacing_mm: voxel size, mm.
        body: (X, Y, Z) bool body mask (used to scale the bias field).
        variation: scanner ranges (TR, TE, flip angle, field strength, bias, noise, scale); the default preset
            uses TR 10 ms, TE 4 ms, flip 15 degrees at 1.5 T.

    Returns:
        ``(mr, params)``: (X, Y, Z) float32 non-negative, and the drawn parameters (tissue parameters, motion,
        bias peak-to-peak, noise level, global scale).
    """
    v, drawn = variation, {}
    tr_ms, te_ms, flip_deg = draw(rng, v.t1w_tr_ms), draw(rng, v.t1w_te_ms), draw(rng, v.t1w_flip_deg)
    tissue = sample_mr_parameters(rng, v.mr_jitter)
    _field_strength(rng, v, tissue, drawn)
    signal = gre_signal(tissue["t1_ms"], tissue["t2s_ms"], tissue["pd"], tr_ms, te_ms, flip_deg)
    signal = signal / signal.max()
    mr, acquisition = _acquire(np.tensordot(signal.astype(np.float32), fractions, axes=1), rng, spacing_mm, body, v)
    params = {"tr_ms": tr_ms, "te_ms": te_ms, "flip_deg": flip_deg, "signal_per_tissue": signal.tolist(),
              "t1_ms": tissue["t1_ms"].tolist(), "t2s_ms": tissue["t2s_ms"].tolist(), "pd": tissue["pd"].tolist(),
              **acquisition, **drawn}
    return mr, params


def synthesize_t2w(fractions: np.ndarray, rng: np.random.Generator, spacing_mm: tuple[float, float, float],
                   body: np.ndarray, variation: Variation = VARIATIONS["default"]) -> tuple[np.ndarray, dict[str, Any]]:
    """T2-weighted turbo spin echo (arbitrary units): long TR and TE, so CSF is bright, fat intermediate, and bone
    and air are dark; the same realism layers as :func:`synthesize_mr`.

    Args and returns as :func:`synthesize_mr`; the default preset draws TR 3500-5000 ms and TE 90-110 ms.
    """
    v, drawn = variation, {}
    tr_ms, te_ms = draw(rng, v.t2w_tr_ms), draw(rng, v.t2w_te_ms)
    tissue = sample_mr_parameters(rng, v.mr_jitter, fields=("t1_ms", "t2_ms", "pd"))
    _field_strength(rng, v, tissue, drawn)
    signal = tse_signal(tissue["t1_ms"], tissue["t2_ms"], tissue["pd"], tr_ms, te_ms)
    signal = signal / signal.max()
    mr, acquisition = _acquire(np.tensordot(signal.astype(np.float32), fractions, axes=1), rng, spacing_mm, body, v)
    params = {"tr_ms": tr_ms, "te_ms": te_ms, "signal_per_tissue": signal.tolist(), "t1_ms": tissue["t1_ms"].tolist(),
              "t2_ms": tissue["t2_ms"].tolist(), "pd": tissue["pd"].tolist(), **acquisition, **drawn}
    return mr, params
