"""Tissue classes of the head phantom with their CT numbers and MR relaxation parameters.

CT values follow EVALUATION.md section 4.1/4.2 (cortical bone 1000-1800 HU, diploe 300-700 HU); MR values are
approximate 1.5 T literature values (T1, T2*, T2 in ms, proton density relative to water) jittered per subject.
Cortical bone and air both have near-zero MR signal, the ambiguity that makes MR->CT translation hard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TISSUES", "Tissue", "TISSUE_INDEX", "sample_ct_numbers", "sample_mr_parameters"]


@dataclass(frozen=True)
class Tissue:
    """One tissue class.

    Attributes:
        name: label name (also used in the phantom's ``labels.json``).
        hu_range: (low, high) range the subject's mean CT number is drawn from, HU.
        t1_ms: longitudinal relaxation time (inf for air).
        t2s_ms: effective transverse relaxation time T2* (gradient echo).
        pd: proton density relative to water.
        t2_ms: transverse relaxation time T2 (spin echo).
    """

    name: str
    hu_range: tuple[float, float]
    t1_ms: float
    t2s_ms: float
    pd: float
    t2_ms: float


#: Label value = index in this tuple. ``air`` is outside the body, ``air_internal`` fills sinuses and airways.
TISSUES: tuple[Tissue, ...] = (
    Tissue("air", (-1000.0, -1000.0), np.inf, 1.0, 0.0, 1.0),
    Tissue("air_internal", (-1000.0, -980.0), np.inf, 1.0, 0.0, 1.0),
    Tissue("fat", (-110.0, -85.0), 260.0, 60.0, 0.9, 85.0),
    Tissue("muscle", (40.0, 60.0), 870.0, 35.0, 0.7, 45.0),
    Tissue("csf", (4.0, 15.0), 4000.0, 1000.0, 1.0, 2000.0),
    Tissue("grey_matter", (35.0, 45.0), 1050.0, 60.0, 0.8, 100.0),
    Tissue("white_matter", (22.0, 32.0), 650.0, 50.0, 0.7, 75.0),
    Tissue("cancellous_bone", (300.0, 700.0), 500.0, 15.0, 0.45, 70.0),
    Tissue("cortical_bone", (1000.0, 1800.0), 1000.0, 0.8, 0.05, 1.0),
)
TISSUE_INDEX: dict[str, int] = {t.name: i for i, t in enumerate(TISSUES)}


def sample_ct_numbers(rng: np.random.Generator) -> np.ndarray:
    """Per-subject mean CT number of each tissue.

    Args:
        rng: the subject's generator.

    Returns:
        (num_tissues,) float64 HU, drawn uniformly in each tissue's ``hu_range``.
    """
    return np.array([rng.uniform(*t.hu_range) for t in TISSUES])


def sample_mr_parameters(rng: np.random.Generator, jitter: float = 0.1,
                         fields: tuple[str, ...] = ("t1_ms", "t2s_ms", "pd")) -> dict[str, np.ndarray]:
    """Per-subject relaxation parameters of each tissue, each jittered by a factor in [1 - jitter, 1 + jitter].

    Args:
        rng: the subject's generator (one draw per tissue and field, in ``fields`` order).
        jitter: relative half-width of the uniform jitter.
        fields: :class:`Tissue` attributes to draw (gradient echo: T1, T2*, PD; spin echo: T1, T2, PD).

    Returns:
        ``{field: (num_tissues,) float64}``.
    """
    out = {}
    for field in fields:
        base = np.array([getattr(t, field) for t in TISSUES])
        out[field] = base * rng.uniform(1.0 - jitter, 1.0 + jitter, size=base.shape)
    return out
