"""Inter-subject variation presets of the head phantom: the ranges each subject's parameters are drawn from.

``default`` is the quick-start phantom (its subjects are alike, so its figures stay comparable from run to run).
``high`` widens the ranges where real heads and scanners differ (head size and shape, skull thickness and density,
ventricle size and atrophy, sinus and mastoid aeration, neck extent, lesions; MR field strength, TR/TE/flip, bias
field, noise and intensity scale), so that removing training pairs costs a model something.

A field given as a ``(low, high)`` pair is drawn uniformly per subject and recorded in the subject's
``params.json``; a plain number is used as is and not drawn, so the ``default`` preset consumes the subject's
random stream exactly as the phantom always has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np

__all__ = ["VARIATIONS", "Variation", "draw", "get_variation"]

Range = Union[float, tuple[float, float]]


@dataclass(frozen=True)
class Variation:
    """Per-subject parameter ranges (mm, degrees, ms, factors).

    Attributes:
        head_scale: global head size factor.
        axis_scale: extra per-axis size factor (head shape).
        rotation_deg: half-width of the head rotation about each axis.
        translation_low_mm / translation_high_mm: (x, y, z) head offset range; a superior offset shows more neck.
        skull_mm / scalp_mm: mean skull and scalp thickness.
        sinus_scale / ventricle_scale: size factors of the paranasal sinuses and the lateral ventricles.
        shape_mm: amplitude of the smooth perturbation of the cranial cavity.
        skull_var_mm: amplitude of the skull-thickness variation over the vault.
        atrophy_mm: widening of the sulcal CSF (thinner cortex, smaller white matter).
        mastoid_aeration: air-cell fraction of the mastoid processes (0: no mastoid is drawn).
        neck: draw a neck (muscle, cervical spine, airway) below the skull base.
        max_lesions: at most this many intracranial lesions (cyst, solid or calcified).
        bone_density: factor on the CT numbers of bone.
        field_t: MR field strengths to choose from (T1 grows and T2* shrinks with the field).
        t1w_tr_ms / t1w_te_ms / t1w_flip_deg: T1w spoiled gradient echo timing.
        t2w_tr_ms / t2w_te_ms: T2w turbo spin echo timing.
        mr_jitter: relative jitter of the tissue relaxation parameters.
        bias_peak_to_peak: MR bias field amplitude over the body.
        rician_sigma: MR noise level relative to the brightest tissue.
        intensity_scale: range of the global MR intensity factor (drawn log-uniformly).
    """

    head_scale: tuple[float, float] = (0.92, 1.04)
    axis_scale: tuple[float, float] = (0.96, 1.04)
    rotation_deg: float = 4.0
    translation_low_mm: tuple[float, float, float] = (-3.0, -3.0, -3.0)
    translation_high_mm: tuple[float, float, float] = (3.0, 3.0, 3.0)
    skull_mm: tuple[float, float] = (5.5, 8.0)
    scalp_mm: tuple[float, float] = (4.5, 7.0)
    sinus_scale: tuple[float, float] = (0.7, 1.3)
    ventricle_scale: tuple[float, float] = (0.7, 1.4)
    shape_mm: Range = 2.5
    skull_var_mm: Range = 1.2
    atrophy_mm: Range = 0.0
    mastoid_aeration: Range = 0.0
    neck: bool = False
    max_lesions: int = 0
    bone_density: Range = 1.0
    field_t: tuple[float, ...] = (1.5,)
    t1w_tr_ms: Range = 10.0
    t1w_te_ms: Range = 4.0
    t1w_flip_deg: Range = 15.0
    t2w_tr_ms: Range = (3500.0, 5000.0)
    t2w_te_ms: Range = (90.0, 110.0)
    mr_jitter: float = 0.1
    bias_peak_to_peak: tuple[float, float] = (0.2, 0.4)
    rician_sigma: tuple[float, float] = (0.008, 0.025)
    intensity_scale: tuple[float, float] = (0.5, 2.0)


#: Named presets (the generator's ``variation`` option and the CLI's ``--variation``).
VARIATIONS: dict[str, Variation] = {
    "default": Variation(),
    "high": Variation(
        head_scale=(0.84, 1.08), axis_scale=(0.9, 1.1), rotation_deg=8.0,
        translation_low_mm=(-5.0, -5.0, -10.0), translation_high_mm=(5.0, 5.0, 24.0),
        skull_mm=(3.5, 11.0), scalp_mm=(3.0, 10.0), sinus_scale=(0.25, 1.6), ventricle_scale=(0.6, 2.4),
        shape_mm=(1.0, 6.0), skull_var_mm=(0.5, 3.0), atrophy_mm=(0.0, 4.0), mastoid_aeration=(0.0, 1.0),
        neck=True, max_lesions=3, bone_density=(0.8, 1.15), field_t=(1.5, 3.0),
        t1w_tr_ms=(7.0, 25.0), t1w_te_ms=(2.0, 6.0), t1w_flip_deg=(8.0, 30.0),
        t2w_tr_ms=(2500.0, 7000.0), t2w_te_ms=(75.0, 130.0), mr_jitter=0.15,
        bias_peak_to_peak=(0.1, 0.7), rician_sigma=(0.005, 0.05), intensity_scale=(0.2, 5.0),
    ),
}


def get_variation(name: str) -> Variation:
    """The preset called ``name`` (ValueError naming the known presets otherwise)."""
    if name not in VARIATIONS:
        raise ValueError(f"variation={name!r}: expected one of {', '.join(VARIATIONS)}.")
    return VARIATIONS[name]


def draw(rng: np.random.Generator, spec: Range, params: dict[str, Any] | None = None, name: str = "") -> float:
    """A ``(low, high)`` range drawn uniformly (and stored as ``params[name]``), or a plain number as is (no draw)."""
    if isinstance(spec, tuple):
        value = float(rng.uniform(*spec))
        if params is not None:
            params[name] = value
        return value
    return float(spec)
