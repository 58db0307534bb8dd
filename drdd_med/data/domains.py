"""Source domains of a translation model and the intensity normalisation each one needs.

One table for the whole toolkit: the data spec's optional per-item ``domain`` key takes one of :data:`DOMAINS`,
the phantom renders each of them, :mod:`drdd_med.io.domain` recognises them from DICOM headers, and a pipeline
picks the source normalisation of an item from :data:`SOURCE_NORMALIZE`. MR has no absolute unit, so its images
are mapped by per-image percentiles; CBCT is (approximately calibrated) HU, so it is mapped by a fixed HU window.
The values are ``normalize`` sections of the data spec format (``data_specs/README.md``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DOMAINS", "DOMAIN_MODALITY", "SOURCE_NORMALIZE", "TARGET_NORMALIZE", "check_domain", "source_normalize"]

#: Known source domains: T1-weighted MR, T2-weighted MR, cone-beam CT.
DOMAINS: tuple[str, ...] = ("t1w", "t2w", "cbct")
#: Domain -> modality name of its images (the spec's ``source.modality`` vocabulary).
DOMAIN_MODALITY: dict[str, str] = {"t1w": "MR", "t2w": "MR", "cbct": "CBCT"}
#: Domain -> source ``normalize`` section: MR per-image percentiles, CBCT a fixed HU window.
SOURCE_NORMALIZE: dict[str, dict[str, Any]] = {
    "t1w": {"type": "percentile", "lower": 0.5, "upper": 99.5},
    "t2w": {"type": "percentile", "lower": 0.5, "upper": 99.5},
    "cbct": {"type": "range", "a_min": -1024, "a_max": 3071},
}
#: The CT target's ``normalize`` section (HU window -1024..3071, the SynthRAD2025 range).
TARGET_NORMALIZE: dict[str, Any] = {"type": "range", "a_min": -1024, "a_max": 3071}


def check_domain(domain: Any, where: str = "domain") -> str:
    """``domain`` if it is one of :data:`DOMAINS`, else a ValueError that names ``where`` and the known domains."""
    if domain not in DOMAINS:
        raise ValueError(f"{where}: unknown domain {domain!r}; known domains: {', '.join(DOMAINS)}.")
    return str(domain)


def source_normalize(domain: str) -> dict[str, Any]:
    """A copy of the source ``normalize`` section of ``domain`` (ValueError for an unknown domain)."""
    return dict(SOURCE_NORMALIZE[check_domain(domain)])
