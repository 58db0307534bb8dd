"""Cone-beam CT synthesis: the subject's CT with the artefacts that make CBCT->CT a translation task.

Starting from the noise-free CT numbers of the same tissue fractions
(:func:`~drdd_med.data.phantom.ct.ct_numbers_image`), in this order:

1. a small rigid set-up difference to the planning CT (a separate acquisition);
2. scatter-induced cupping: attenuation is lowered towards the centre of each axial section, by 4-12 % of water
   at the deepest point, with the parabolic depth profile of a uniform cylinder, 2q - q^2 (q = depth below the
   skin over the section's largest depth); and a bright rim where the body leaves the field of view
   (truncated projections);
3. a smooth low-frequency HU shift (~100 mm wavelength, 10-40 HU);
4. streaks through dense bone in random directions (mostly dark, beam-hardening-like), fading along their length;
5. noise of 20-40 HU, slightly correlated in-plane and higher at the centre (fewer photons through the thickest path);
6. a per-subject HU calibration ``a * HU + b`` (a in 0.88-1.08, b in -60..60 HU);
7. a cylindrical field of view about the superior-inferior axis (radius 80-110 mm, length 140-190 mm, centre off by
   up to 10 mm), so the skull edge can fall outside it; voxels outside are air (-1000 HU).

The result is rounded and clipped to [HU_MIN, HU_MAX], as a stored CBCT would be.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from drdd_med.data.phantom.anatomy import rigid_resample, smooth_field
from drdd_med.keys import HU_AIR, HU_MAX, HU_MIN

__all__ = ["cupping_profile", "synthesize_cbct"]


def _cylinder_coordinates(shape: tuple[int, ...], spacing_mm: np.ndarray,
                          centre_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(radius from the z axis through ``centre_mm``, z offset from it), mm, as broadcastable (X, Y, 1) / (1, 1, Z)."""
    axes = [(np.arange(n) - (n - 1) / 2.0) * float(d) - float(c) for n, d, c in zip(shape, spacing_mm, centre_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    return np.sqrt(x * x + y * y), z


def cupping_profile(body: np.ndarray, spacing_mm: np.ndarray) -> np.ndarray:
    """Per axial section, 2q - q^2 of the normalised depth q below the body surface (1 at the deepest point)."""
    profile = np.zeros(body.shape, np.float32)
    for k in range(body.shape[2]):
        if body[..., k].any():
            depth = ndimage.distance_transform_edt(body[..., k], sampling=spacing_mm[:2])
            q = depth / depth.max()
            profile[..., k] = 2.0 * q - q * q
    sigma = 5.0 / np.asarray(spacing_mm[:2], dtype=float)
    return ndimage.gaussian_filter(profile, sigma=(*sigma, 0.0)).astype(np.float32)


def _streaks(rng: np.random.Generator, clean: np.ndarray, spacing_mm: np.ndarray) -> tuple[np.ndarray, int]:
    """Line streaks through dense-bone voxels, per axial section: Gaussian cross-section ~1 voxel, 60 mm decay."""
    out = np.zeros(clean.shape, np.float32)
    nx, ny = clean.shape[:2]
    x = ((np.arange(nx) - (nx - 1) / 2.0) * spacing_mm[0])[:, None]
    y = ((np.arange(ny) - (ny - 1) / 2.0) * spacing_mm[1])[None, :]
    width = float(np.mean(spacing_mm[:2]))
    count = 0
    for k in range(clean.shape[2]):
        dense = np.argwhere(clean[..., k] > 700.0)
        for _ in range(min(len(dense), int(rng.integers(0, 5)))):
            i, j = dense[int(rng.integers(len(dense)))]
            theta = rng.uniform(0.0, np.pi)
            amplitude = rng.uniform(30.0, 100.0) * (-1.0 if rng.uniform() < 0.7 else 1.0)
            dx, dy = x - x[i, 0], y - y[0, j]
            across = dx * np.sin(theta) - dy * np.cos(theta)
            along = dx * np.cos(theta) + dy * np.sin(theta)
            out[..., k] += amplitude * np.exp(-0.5 * (across / width) ** 2) * np.exp(-np.abs(along) / 60.0)
            count += 1
    return out, count


def synthesize_cbct(clean_ct: np.ndarray, body: np.ndarray, rng: np.random.Generator,
                    spacing_mm: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """CBCT in HU from the subject's noise-free CT numbers (see the module docstring for the model).

    Args:
        clean_ct: (X, Y, Z) float32 noise-free HU of the subject (the CT before noise and rounding).
        body: (X, Y, Z) bool body mask of the CT.
        rng: the CBCT's own generator.
        spacing_mm: voxel size, mm.

    Returns:
        ``(cbct, fov, params)``: (X, Y, Z) float32 HU with integer values, the (X, Y, Z) bool field of view, and
        the drawn parameters.
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    rotation_deg, translation_mm = rng.uniform(-1.5, 1.5, size=3), rng.uniform(-2.0, 2.0, size=3)
    hu = rigid_resample(clean_ct, spacing, rotation_deg, translation_mm)
    moved_body = rigid_resample(body.astype(np.float32), spacing, rotation_deg, translation_mm) >= 0.5
    fov_centre = np.array([*rng.uniform(-10.0, 10.0, size=2), rng.uniform(-10.0, 10.0)])
    radius, half_length = float(rng.uniform(80.0, 110.0)), float(rng.uniform(70.0, 95.0))
    r, z = _cylinder_coordinates(hu.shape, spacing, fov_centre)
    fov = (r <= radius) & (np.abs(z) <= half_length)

    cupping = float(rng.uniform(0.04, 0.12))
    profile = cupping_profile(moved_body, spacing)
    rim_hu = float(rng.uniform(40.0, 120.0))
    rim = np.exp(-np.clip(radius - r, 0.0, None) / 6.0) * moved_body
    hu = (hu - HU_AIR) * (1.0 - cupping * profile) + HU_AIR + rim_hu * rim
    shift_hu = float(rng.uniform(10.0, 40.0))
    hu += shift_hu * smooth_field(rng, hu.shape, tuple(100.0 / spacing))
    streaks, n_streaks = _streaks(rng, hu, spacing)
    hu += streaks
    noise_hu = float(rng.uniform(20.0, 40.0))
    noise = ndimage.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), sigma=(0.7, 0.7, 0.0))
    hu += noise_hu * noise / (noise.std() + 1e-6) * (1.0 + 0.5 * profile)
    slope, intercept = float(rng.uniform(0.88, 1.08)), float(rng.uniform(-60.0, 60.0))
    hu = slope * hu + intercept
    hu[~fov] = HU_AIR
    cbct = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.float32)
    params = {"misregistration_rotation_deg": rotation_deg.tolist(),
              "misregistration_translation_mm": translation_mm.tolist(),
              "fov_centre_mm": fov_centre.tolist(), "fov_radius_mm": radius, "fov_half_length_mm": half_length,
              "cupping": cupping, "truncation_rim_hu": rim_hu, "shift_hu": shift_hu, "streaks": n_streaks,
              "noise_hu": noise_hu, "calibration_slope": slope, "calibration_intercept_hu": intercept}
    return cbct, fov, params
