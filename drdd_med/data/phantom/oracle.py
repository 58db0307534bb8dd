"""Segmentation oracle: the sCT a perfect tissue segmentation of the phantom's MR would give, the floor of MR->CT.

The phantom draws each subject's CT numbers independently of its MR (cortical bone, 1000-1800 HU, is dark in
every MR sequence; each tissue's HU is drawn uniformly from its range) and moves the MR by a random rigid
misregistration (up to 1.5 mm and 1.5 degrees per axis). No MR-only model can know either, so the best it can
hope for is the subject's true tissue fractions *where the MR shows them*, painted with the population's CT
numbers (the midpoint of each range: the median of a uniform draw, which minimises the expected absolute error).
Scored like a model, that image is the floor a model's MAE approaches on the phantom. It reads the phantom's
ground truth, so it is a reference row in reports, never a method.

CBCT sources are not covered: a CBCT shows the subject's own CT numbers, so the population's are no floor there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from drdd_med import keys
from drdd_med.data.phantom.anatomy import build_anatomy, rigid_resample
from drdd_med.data.phantom.ct import ct_numbers_image
from drdd_med.data.phantom.generate import SOURCE_FILES, SPEC_NAME
from drdd_med.data.phantom.tissues import TISSUE_INDEX, TISSUES
from drdd_med.data.phantom.variation import get_variation

__all__ = ["ORACLE_DOMAINS", "oracle_applies", "oracle_sct", "population_ct_numbers", "subject_fractions"]

#: Source domains the oracle is a floor for, with the key of their acquisition in a subject's ``params.json``.
ORACLE_DOMAINS = {"t1w": "mr", "t2w": "t2w"}
_FILE_DOMAIN = {name: domain for domain, name in SOURCE_FILES.items() if domain in ORACLE_DOMAINS}
_SUBJECT_DIR = re.compile(r"^s(\d{3,})$")


def population_ct_numbers(bone_density: float | Sequence[float] = 1.0) -> np.ndarray:
    """(num_tissues,) HU: the midpoint of each tissue's range, bone scaled by the midpoint of ``bone_density``."""
    hu = np.array([(low + high) / 2.0 for low, high in (t.hu_range for t in TISSUES)])
    density = float(np.mean(bone_density)) if isinstance(bone_density, Sequence) else float(bone_density)
    for name in ("cancellous_bone", "cortical_bone"):
        hu[TISSUE_INDEX[name]] *= density
    return hu


def subject_fractions(seed: int | Sequence[int], shape: Sequence[int], spacing_mm: Sequence[float],
                      variation: str = "default") -> np.ndarray:
    """(num_tissues, X, Y, Z) float32 tissue fractions of a phantom subject on its CT grid (the generator's own
    anatomy: the subject's random stream starts with it)."""
    head, _, _ = build_anatomy(np.random.default_rng(seed), tuple(int(s) for s in shape),
                               tuple(float(s) for s in spacing_mm), get_variation(variation))
    return head.fractions


def _locate(source: str | Path) -> tuple[Path, int, str, dict] | None:
    """(subject folder, subject index, domain, generator record) of a phantom source file, or None."""
    source = Path(source)
    match, domain = _SUBJECT_DIR.match(source.parent.name), _FILE_DOMAIN.get(source.name)
    spec_path = source.parent.parent / SPEC_NAME
    if match is None or domain is None or not spec_path.is_file() or not (source.parent / "params.json").is_file():
        return None
    generator = json.loads(spec_path.read_text()).get("generator", {})
    if generator.get("module") != "drdd_med.data.phantom" or domain not in generator.get("domains", ["t1w"]):
        return None
    return source.parent, int(match.group(1)), domain, generator


def oracle_applies(cases: Sequence[Mapping[str, str]]) -> bool:
    """True when every case's source is an MR image of a phantom subject written by ``write_phantom_dataset``."""
    return bool(cases) and all(_locate(case[keys.SOURCE]) is not None for case in cases)


def oracle_sct(source: str | Path) -> np.ndarray:
    """The segmentation oracle's sCT (X, Y, Z float32 HU, on the CT grid) for one phantom MR source file.

    Raises:
        ValueError: ``source`` is not the T1w / T2w image of a subject folder of a phantom dataset.
    """
    found = _locate(source)
    if found is None:
        raise ValueError(f"{source}: not a T1w/T2w source of a drdd_med phantom subject "
                         f"(s<NNN>/{'|'.join(_FILE_DOMAIN)} next to params.json, with {SPEC_NAME} one folder up); "
                         "the oracle needs its ground truth.")
    folder, index, domain, gen = found
    variation = gen.get("variation", "default")
    fractions = subject_fractions([gen["seed"], index], gen["shape"], gen["spacing_mm"], variation)
    acquisition = json.loads((folder / "params.json").read_text())[ORACLE_DOMAINS[domain]]
    spacing = np.asarray(gen["spacing_mm"], dtype=float)
    rotation = np.asarray(acquisition["misregistration_rotation_deg"], dtype=float)
    translation = np.asarray(acquisition["misregistration_translation_mm"], dtype=float)
    moved = np.stack([rigid_resample(f, spacing, rotation, translation) for f in fractions])
    hu = population_ct_numbers(get_variation(variation).bone_density)
    return ct_numbers_image(moved, hu, np.zeros(moved.shape[1:], dtype=np.float32))
