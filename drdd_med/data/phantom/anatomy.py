"""Procedural head anatomy: per-voxel tissue fractions drawn from smooth implicit shapes.

Every structure is an approximate signed distance function (mm, negative inside) of a perturbed ellipsoid in a
subject-specific canonical frame (scaled, rotated by a few degrees, translated). A structure is painted over the
previous ones with a soft membership ``clip(0.5 - d / w, 0, 1)`` of width w = one voxel, which gives partial volume
at every boundary without supersampling. Both CT and MR are derived from the same fractions, so pairs are exact.

Canonical frame (RAS, mm, origin at the field-of-view centre): +x right, +y anterior, +z superior.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from drdd_med.data.phantom.tissues import TISSUE_INDEX, TISSUES
from drdd_med.data.phantom.variation import VARIATIONS, Variation, draw

__all__ = ["HeadAnatomy", "build_anatomy", "grid_affine", "rigid_resample", "smooth_field"]

T = TISSUE_INDEX


def grid_affine(shape: tuple[int, int, int], spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """RAS affine of a grid centred on the origin.

    Args:
        shape: (X, Y, Z) voxels.
        spacing_mm: voxel size per axis, mm.

    Returns:
        (4, 4) float64 affine.
    """
    affine = np.diag([*map(float, spacing_mm), 1.0])
    affine[:3, 3] = -(np.asarray(shape, dtype=float) - 1.0) / 2.0 * np.asarray(spacing_mm, dtype=float)
    return affine


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rigid_resample(image: np.ndarray, spacing_mm: np.ndarray, rotation_deg: np.ndarray,
                   translation_mm: np.ndarray) -> np.ndarray:
    """Move the image content by a small rigid transform about the grid centre (linear interpolation).

    Used for the misregistration of a source image (MR, CBCT) to its CT: a separate acquisition of the same head.
    """
    rot = _rotation(rotation_deg)
    # output voxel o -> input voxel i = S^-1 R^T (S (o - c) - t) + c, with S = diag(spacing), c = centre
    scale = np.diag(spacing_mm)
    matrix = np.linalg.inv(scale) @ rot.T @ scale
    centre = (np.asarray(image.shape) - 1) / 2.0
    offset = centre - matrix @ centre - np.linalg.inv(scale) @ rot.T @ translation_mm
    return ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="nearest")


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], wavelength_vox: tuple[float, ...]) -> np.ndarray:
    """Zero-mean, unit-std smooth random field: coarse Gaussian noise upsampled by cubic splines."""
    coarse = tuple(max(3, int(np.ceil(n / w)) + 2) for n, w in zip(shape, wavelength_vox))
    field = ndimage.zoom(rng.standard_normal(coarse).astype(np.float32), [n / c for n, c in zip(shape, coarse)],
                         order=3, mode="nearest", grid_mode=True)
    field = field[: shape[0], : shape[1], : shape[2]]
    return ((field - field.mean()) / (field.std() + 1e-6)).astype(np.float32)


class HeadAnatomy:
    """Canonical coordinates of a grid and a painter of soft tissue fractions.

    Args:
        shape: (X, Y, Z) voxels.
        spacing_mm: voxel size, mm.
        rotation_deg: head orientation (rotation about x, y, z), degrees.
        translation_mm: head offset, mm.
        scale: (3,) per-axis head size factor.
    """

    def __init__(self, shape: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                 rotation_deg: np.ndarray, translation_mm: np.ndarray, scale: np.ndarray) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.affine = grid_affine(self.shape, spacing_mm)
        axes = [self.affine[i, 3] + np.arange(n, dtype=np.float32) * float(spacing_mm[i]) for i, n in enumerate(self.shape)]
        world = np.stack(np.meshgrid(*axes, indexing="ij"), axis=0).reshape(3, -1) - np.asarray(translation_mm)[:, None]
        canonical = _rotation(rotation_deg).T @ world / np.asarray(scale)[:, None]
        self.x, self.y, self.z = (c.reshape(self.shape).astype(np.float32) for c in canonical)
        self.width_mm = float(np.mean(spacing_mm))
        self.fractions = np.zeros((len(TISSUES), *self.shape), dtype=np.float32)
        self.fractions[T["air"]] = 1.0

    def ellipsoid(self, center: tuple[float, float, float], semi: tuple[float, float, float], yaw_deg: float = 0.0) -> np.ndarray:
        """Approximate signed distance (mm) to an ellipsoid, optionally turned about z by ``yaw_deg``."""
        px, py, pz = self.x - center[0], self.y - center[1], self.z - center[2]
        if yaw_deg:
            c, s = np.cos(np.deg2rad(yaw_deg)), np.sin(np.deg2rad(yaw_deg))
            px, py = c * px + s * py, -s * px + c * py
        k0 = np.sqrt((px / semi[0]) ** 2 + (py / semi[1]) ** 2 + (pz / semi[2]) ** 2)
        k1 = np.sqrt((px / semi[0] ** 2) ** 2 + (py / semi[1] ** 2) ** 2 + (pz / semi[2] ** 2) ** 2)
        return (k0 * (k0 - 1.0) / (k1 + 1e-6)).astype(np.float32)

    def membership(self, sdf: np.ndarray) -> np.ndarray:
        """Soft inside-fraction of a signed distance map: 1 inside, 0 outside, linear over one voxel."""
        return np.clip(0.5 - sdf / self.width_mm, 0.0, 1.0)

    def paint(self, tissue: str, sdf: np.ndarray) -> None:
        """Replace the fractions inside ``sdf < 0`` by ``tissue`` (partial volume at the boundary)."""
        m = self.membership(sdf)
        inside = m > 0
        if not inside.any():
            return
        sub = self.fractions[:, inside]
        sub *= 1.0 - m[inside]
        sub[T[tissue]] += m[inside]
        self.fractions[:, inside] = sub

    def labels(self) -> np.ndarray:
        """(X, Y, Z) uint8 label of the dominant tissue per voxel (index into ``TISSUES``)."""
        return np.argmax(self.fractions, axis=0).astype(np.uint8)


def _smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _draw_lesions(rng: np.random.Generator, max_lesions: int) -> list[dict[str, Any]]:
    """Up to ``max_lesions`` intracranial spheres: a cyst or infarct (CSF), a solid lesion (grey-matter-like) or a
    calcification (bone: bright on CT, dark on MR, the MR->CT ambiguity in small)."""
    lesions = []
    for _ in range(int(rng.integers(0, max_lesions + 1))):
        u = rng.uniform(-1.0, 1.0, size=3)
        u /= max(1.0, float(np.linalg.norm(u)))
        kind = ("csf", "grey_matter", "cancellous_bone")[int(rng.integers(0, 3))]
        radius = float(rng.uniform(3.0, 12.0)) if kind != "cancellous_bone" else float(rng.uniform(2.0, 5.0))
        centre = np.array([0.0, -8.0, 12.0]) + u * np.array([36.0, 48.0, 28.0])
        lesions.append({"tissue": kind, "centre_mm": centre.tolist(), "radius_mm": radius})
    return lesions


def _paint_neck(head: HeadAnatomy) -> None:
    """Cervical spine (vertebral bodies, arch, spinal canal) and the pharyngeal airway below the skull base."""
    head.paint("cortical_bone", head.ellipsoid((0.0, -14.0, -150.0), (11.0, 10.0, 90.0)))
    head.paint("cancellous_bone", head.ellipsoid((0.0, -14.0, -150.0), (11.0, 10.0, 90.0)) + 2.0)
    head.paint("cortical_bone", head.ellipsoid((0.0, -32.0, -150.0), (10.0, 10.0, 90.0)))
    head.paint("csf", head.ellipsoid((0.0, -32.0, -150.0), (6.0, 6.0, 92.0)))
    head.paint("air_internal", head.ellipsoid((0.0, 14.0, -150.0), (9.0, 6.0, 92.0)))


def _paint_mastoids(head: HeadAnatomy, aeration: float) -> None:
    """Mastoid processes behind the ears; ``aeration`` in [0, 1] sets the size of their air cells."""
    for side in (-1.0, 1.0):
        centre = (side * 40.0, -30.0, -48.0)
        head.paint("cortical_bone", head.ellipsoid(centre, (9.0, 11.0, 12.0)))
        head.paint("cancellous_bone", head.ellipsoid(centre, (9.0, 11.0, 12.0)) + 1.5)
        if aeration > 0.05:
            head.paint("air_internal", head.ellipsoid(centre, (7.0 * aeration, 9.0 * aeration, 10.0 * aeration)))


def build_anatomy(rng: np.random.Generator, shape: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                  variation: Variation = VARIATIONS["default"]) -> tuple[HeadAnatomy, np.ndarray, dict[str, Any]]:
    """Draw one subject's head.

    Args:
        rng: the subject's generator (consumed in a fixed order, so a seed gives the same head).
        shape: (X, Y, Z) voxels; the default field of view is about 210 x 210 x 170 mm.
        spacing_mm: voxel size, mm.
        variation: the ranges the head's parameters are drawn from.

    Returns:
        ``(anatomy, body_sdf, params)``: the painted anatomy, the head's signed distance (mm; < 0 is the body,
        sinuses included) and the drawn shape parameters.
    """
    v = variation
    fov = np.asarray(shape) * np.asarray(spacing_mm)
    fit = min(1.0, fov[2] / 168.0, min(fov[:2]) / 210.0)  # smaller heads in a smaller field of view
    scale = rng.uniform(*v.head_scale) * rng.uniform(*v.axis_scale, size=3) * fit
    params: dict[str, Any] = {
        "rotation_deg": rng.uniform(-v.rotation_deg, v.rotation_deg, size=3),
        "translation_mm": rng.uniform(v.translation_low_mm, v.translation_high_mm, size=3),
        "scale": scale, "skull_mm": rng.uniform(*v.skull_mm), "scalp_mm": rng.uniform(*v.scalp_mm),
        "sinus_scale": rng.uniform(*v.sinus_scale), "ventricle_scale": rng.uniform(*v.ventricle_scale),
    }
    shape_mm = draw(rng, v.shape_mm, params, "shape_mm")
    skull_var_mm = draw(rng, v.skull_var_mm, params, "skull_var_mm")
    atrophy = draw(rng, v.atrophy_mm, params, "atrophy_mm")
    aeration = draw(rng, v.mastoid_aeration, params, "mastoid_aeration")
    if v.max_lesions:
        params["lesions"] = _draw_lesions(rng, v.max_lesions)
    head = HeadAnatomy(shape, spacing_mm, params["rotation_deg"], params["translation_mm"], scale)
    spacing = np.asarray(spacing_mm, dtype=float)
    coarse = smooth_field(rng, head.shape, tuple(80.0 / spacing))     # shape perturbation, ~80 mm wavelength
    fine = smooth_field(rng, head.shape, tuple(9.0 / spacing))        # gyral folding
    skull_var = smooth_field(rng, head.shape, tuple(60.0 / spacing))  # skull thickness over the vault

    # 1. Outer shapes: cranial cavity, skull, scalp, and the face / skull-base block below the cavity.
    cavity = head.ellipsoid((0.0, -8.0, 6.0), (64.0, 82.0, 62.0)) + shape_mm * coarse
    skull_mm = params["skull_mm"] + skull_var_mm * skull_var
    skull_outer = cavity - skull_mm
    face = head.ellipsoid((0.0, 20.0, -66.0), (62.0, 84.0, 52.0)) + 1.5 * coarse
    body = _smooth_union(skull_outer - params["scalp_mm"], face, 15.0)
    if v.neck:
        body = _smooth_union(body, head.ellipsoid((0.0, -5.0, -150.0), (46.0, 44.0, 100.0)), 12.0)
    head.paint("muscle", body)
    head.paint("fat", body + 1.5)                                     # skin 1.5 mm, then subcutaneous fat
    head.paint("muscle", body + 1.5 + rng.uniform(1.5, 3.0))          # galea / temporalis / facial muscle
    # 2. Skull vault: outer table, diploe, inner table (thickness varies over the vault).
    head.paint("cortical_bone", skull_outer)
    head.paint("cancellous_bone", cavity - skull_mm + rng.uniform(1.4, 2.2))
    head.paint("cortical_bone", cavity - rng.uniform(1.2, 1.8))
    # 3. Skull base, petrous ridges, maxilla; orbits with eyes.
    base = head.ellipsoid((0.0, -2.0, -58.0), (56.0, 72.0, 12.0))
    head.paint("cortical_bone", base)
    head.paint("cancellous_bone", base + 2.0)
    for side in (-1.0, 1.0):
        head.paint("cortical_bone", head.ellipsoid((side * 30.0, -22.0, -50.0), (7.0, 22.0, 7.0), yaw_deg=side * 40.0))
    maxilla = head.ellipsoid((0.0, 60.0, -74.0), (40.0, 26.0, 22.0))
    head.paint("cortical_bone", maxilla)
    head.paint("cancellous_bone", maxilla + 2.0)
    frontal = head.ellipsoid((0.0, 70.0, -10.0), (26.0, 14.0, 16.0))
    head.paint("cortical_bone", frontal)
    head.paint("cancellous_bone", frontal + 2.0)
    for side in (-1.0, 1.0):
        head.paint("fat", head.ellipsoid((side * 32.0, 58.0, -30.0), (17.0, 17.0, 15.0)))
        head.paint("csf", head.ellipsoid((side * 32.0, 58.0, -30.0), (11.5, 12.0, 11.5)))  # vitreous humour
    if v.neck:
        _paint_neck(head)
    if isinstance(v.mastoid_aeration, tuple):
        _paint_mastoids(head, aeration)
    # 4. Air spaces inside bone: frontal, sphenoid and maxillary sinuses, nasal cavity.
    s = params["sinus_scale"]
    head.paint("air_internal", head.ellipsoid((0.0, 72.0, -9.0), (13.0 * s, 6.0 * s, 9.0 * s)))
    head.paint("air_internal", head.ellipsoid((0.0, 18.0, -63.0), (12.0 * s, 10.0 * s, 7.0 * s)))
    for side in (-1.0, 1.0):
        head.paint("air_internal", head.ellipsoid((side * 17.0, 58.0, -72.0), (11.0 * s, 14.0 * s, 14.0 * s)))
    head.paint("air_internal", head.ellipsoid((0.0, 72.0, -66.0), (5.0, 22.0, 24.0)))
    # 5. Intracranial: CSF, grey-matter ribbon with sulci, white matter, deep grey nuclei, falx, ventricles.
    head.paint("csf", cavity)
    head.paint("grey_matter", cavity + (2.5 + atrophy) + 1.8 * np.abs(fine))
    head.paint("white_matter", cavity + (6.0 + 1.5 * atrophy) + 4.0 * fine)
    falx = np.maximum(np.abs(head.x) - 1.0, -(head.z + 10.0))
    head.paint("csf", np.maximum(falx, cavity + 2.0))
    for side in (-1.0, 1.0):  # basal ganglia / thalamus
        head.paint("grey_matter", head.ellipsoid((side * 15.0, -2.0, 4.0), (8.0, 16.0, 9.0), yaw_deg=side * 8.0))
    vs = params["ventricle_scale"]
    for side in (-1.0, 1.0):
        ventricle = head.ellipsoid((side * 7.0 * vs, -6.0, 14.0), (4.5 * vs, 24.0, 8.0 * vs), yaw_deg=-side * 10.0)
        head.paint("csf", ventricle)
    for lesion in params.get("lesions", []):
        r = lesion["radius_mm"]
        head.paint(lesion["tissue"], head.ellipsoid(tuple(lesion["centre_mm"]), (r, r, r)))
    return head, body, params
