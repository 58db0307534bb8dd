"""Seeded paired head phantoms (T1w MR, T2w MR, CBCT / CT) and the on-disk phantom dataset (NIfTI + data spec).

Default geometry: 96 x 96 x 48 voxels of 2.2 x 2.2 x 3.5 mm (a 211 x 211 x 168 mm field of view from the maxillary
sinuses to the vertex). Axial slices are 96 x 96, small enough to train a 2D model on CPU; the default set is 12
paired subjects (8 training, 2 validation, 2 test) and 16 CT-only subjects for the noise stage, with T1w sources.

Every source domain of a subject is rendered from the same tissue fractions as its CT. The T1w image continues the
subject's random stream (so it is the same image whatever other domains are asked for, and the same as the phantom
has always made); each other domain draws from its own stream, derived from the subject seed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drdd_med import keys
from drdd_med.data.domains import DOMAIN_MODALITY, DOMAINS, TARGET_NORMALIZE, check_domain, source_normalize
from drdd_med.data.phantom.anatomy import HeadAnatomy, build_anatomy, smooth_field
from drdd_med.data.phantom.cbct import synthesize_cbct
from drdd_med.data.phantom.ct import ct_numbers_image, synthesize_ct
from drdd_med.data.phantom.mr import synthesize_mr, synthesize_t2w
from drdd_med.data.phantom.tissues import TISSUES
from drdd_med.io.atomic import atomic_dir
from drdd_med.data.phantom.variation import Variation, draw, get_variation

__all__ = [
    "CBCT_MASK_FILE", "DEFAULT_SHAPE", "DEFAULT_SPACING_MM", "SOURCE_FILES", "SPEC_NAME", "make_phantom_ct",
    "make_phantom_pair", "make_phantom_subject", "phantom_spec", "split_counts", "write_phantom_dataset",
]

logger = logging.getLogger(__name__)

DEFAULT_SHAPE = (96, 96, 48)
DEFAULT_SPACING_MM = (2.2, 2.2, 3.5)
SPEC_NAME = "phantom.json"
#: Domain -> file name of its source image in a subject folder (T1w keeps the phantom's original ``mr.nii.gz``).
SOURCE_FILES = {"t1w": "mr.nii.gz", "t2w": "t2w.nii.gz", "cbct": "cbct.nii.gz"}
#: Body mask inside the CBCT's field of view: the mask of CBCT items.
CBCT_MASK_FILE = "cbct_mask.nii.gz"
_SOURCE_DTYPES = {"t1w": np.float32, "t2w": np.float32, "cbct": np.int16}
_DEFAULT_DOMAINS = ("t1w",)
_GENERATOR_VERSION = 1
_UNPAIRED_OFFSET = 100_000  # unpaired subjects use a disjoint seed range


def _check_domains(domains: Sequence[str]) -> tuple[str, ...]:
    """The requested domains in :data:`DOMAINS` order (ValueError for an empty list, unknown or repeated names)."""
    names = [check_domain(d, "phantom domains") for d in domains]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"phantom domains {list(domains)}: need one or more distinct names of {', '.join(DOMAINS)}.")
    return tuple(d for d in DOMAINS if d in names)


def _domain_rng(seed: int | Sequence[int], domain: str) -> np.random.Generator:
    """The generator of one non-T1w source image of a subject: a child stream of the subject seed."""
    entropy = [int(s) for s in np.atleast_1d(seed)]
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(1 + DOMAINS.index(domain),)))


@dataclass
class _Subject:
    rng: np.random.Generator
    head: HeadAnatomy
    mask: np.ndarray
    ct: np.ndarray
    params: dict[str, Any]
    spacing: tuple[float, float, float]
    texture: np.ndarray


def _subject(seed: int | Sequence[int], shape: Sequence[int], spacing_mm: Sequence[float],
             variation: Variation) -> _Subject:
    rng = np.random.default_rng(seed)
    shape_t = tuple(int(s) for s in shape)
    spacing_t = tuple(float(s) for s in spacing_mm)
    if len(shape_t) != 3 or min(shape_t) < 4 or len(spacing_t) != 3 or min(spacing_t) <= 0:
        raise ValueError(f"phantom shape {shape} / spacing {spacing_mm}: need 3 sizes >= 4 voxels and 3 positive spacings (mm).")
    head, body_sdf, anatomy = build_anatomy(rng, shape_t, spacing_t, variation)
    bone_texture = smooth_field(rng, shape_t, tuple(6.0 / np.asarray(spacing_t)))
    density: dict[str, Any] = {}
    bone_density = draw(rng, variation.bone_density, density, "bone_density")
    ct, ct_params = synthesize_ct(head.fractions, rng, bone_texture, bone_density)
    mask = (head.membership(body_sdf) >= 0.5)
    return _Subject(rng, head, mask, ct, {"anatomy": anatomy, "ct": {**ct_params, **density}}, spacing_t, bone_texture)


def _meta(sub: _Subject) -> dict[str, Any]:
    return {"affine": sub.head.affine, "labels": sub.head.labels(), "tissues": [t.name for t in TISSUES],
            "params": sub.params}


def make_phantom_subject(seed: int | Sequence[int], shape: Sequence[int] = DEFAULT_SHAPE,
                         spacing_mm: Sequence[float] = DEFAULT_SPACING_MM, domains: Sequence[str] = _DEFAULT_DOMAINS,
                         variation: str = "default",
                         ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, Any]]:
    """One paired subject: a source image per domain, CT and body mask on the same RAS grid.

    Args:
        seed: subject seed (an int or a sequence of ints for ``numpy.random.default_rng``); equal seeds give
            byte-identical volumes.
        shape: (X, Y, Z) voxels.
        spacing_mm: voxel size, mm.
        domains: source domains to render, of :data:`~drdd_med.data.domains.DOMAINS`: ``"t1w"`` (spoiled gradient
            echo), ``"t2w"`` (turbo spin echo), ``"cbct"`` (cone-beam CT, see :mod:`~drdd_med.data.phantom.cbct`).
        variation: inter-subject variation preset, ``"default"`` or ``"high"``
            (:mod:`~drdd_med.data.phantom.variation`).

    Returns:
        ``(images, ct, mask, meta)``: ``images`` maps each domain (in ``DOMAINS`` order) to an (X, Y, Z) float32
        volume (MR non-negative, arbitrary units; CBCT in HU with integer values); ``ct`` is in HU (integer values
        in [-1024, 3071]); ``mask`` is the body (1) vs outside air (0), sinuses included. ``meta`` has ``affine``
        (4, 4 RAS, mm), ``labels`` ((X, Y, Z) uint8 dominant tissue, index into ``tissues``), ``tissues`` (names),
        the drawn ``params`` (``anatomy``, ``ct``, and ``mr`` / ``t2w`` / ``cbct`` per rendered domain) and, with
        CBCT, ``cbct_mask`` (the body inside the CBCT's field of view, float32).

    Example:
        >>> images, ct, mask, meta = make_phantom_subject(0, (32, 32, 16), (6.6, 6.6, 10.5), domains=("t2w", "cbct"))
    """
    v, wanted = get_variation(variation), _check_domains(domains)
    sub = _subject(seed, shape, spacing_mm, v)
    fractions, meta, images = sub.head.fractions, _meta(sub), {}
    if "t1w" in wanted:
        images["t1w"], sub.params["mr"] = synthesize_mr(fractions, sub.rng, sub.spacing, sub.mask, v)
    if "t2w" in wanted:
        images["t2w"], sub.params["t2w"] = synthesize_t2w(fractions, _domain_rng(seed, "t2w"), sub.spacing, sub.mask, v)
    if "cbct" in wanted:
        clean = ct_numbers_image(fractions, np.asarray(sub.params["ct"]["hu_per_tissue"]), sub.texture)
        rng = _domain_rng(seed, "cbct")
        images["cbct"], fov, sub.params["cbct"] = synthesize_cbct(clean, sub.mask, rng, sub.spacing)
        meta["cbct_mask"] = (sub.mask & fov).astype(np.float32)
    return images, sub.ct, sub.mask.astype(np.float32), meta


def make_phantom_pair(seed: int | Sequence[int], shape: Sequence[int] = DEFAULT_SHAPE,
                      spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
                      variation: str = "default") -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """One paired T1w subject: ``(mr, ct, mask, meta)`` as in :func:`make_phantom_subject` with ``domains=("t1w",)``.

    Example:
        >>> mr, ct, mask, meta = make_phantom_pair(0, shape=(32, 32, 16), spacing_mm=(6.6, 6.6, 10.5))
    """
    images, ct, mask, meta = make_phantom_subject(seed, shape, spacing_mm, ("t1w",), variation)
    return images["t1w"], ct, mask, meta


def make_phantom_ct(seed: int | Sequence[int], shape: Sequence[int] = DEFAULT_SHAPE,
                    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
                    variation: str = "default") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A CT-only subject (no source synthesis, so cheaper): ``(ct, mask, meta)`` as in :func:`make_phantom_pair`."""
    sub = _subject(seed, shape, spacing_mm, get_variation(variation))
    return sub.ct, sub.mask.astype(np.float32), _meta(sub)


def split_counts(subjects: int) -> tuple[int, int, int]:
    """(training, validation, test) subject counts: one sixth each for validation and test, at least one each.

    Raises:
        ValueError: fewer than 3 paired subjects.
    """
    if subjects < 3:
        raise ValueError(f"subjects={subjects}: the phantom needs at least 3 paired subjects (training, validation, test).")
    held_out = max(1, round(subjects / 6))
    return subjects - 2 * held_out, held_out, held_out


def phantom_spec(subjects: int, unpaired: int, seed: int, shape: Sequence[int], spacing_mm: Sequence[float],
                 prefix: str = "", domains: Sequence[str] = _DEFAULT_DOMAINS,
                 variation: str = "default") -> dict[str, Any]:
    """The data spec (data_specs format) of a phantom dataset; paths are ``prefix`` + folder-relative paths.

    A T1w-only dataset is the original phantom's spec, item for item. With other domains, each subject gives one
    item per domain (id ``phantom_NNN_<domain>``) that names its ``domain``; all of a subject's items share its CT
    and sit in the same split, and CBCT items take the body mask inside the CBCT field of view.
    """
    wanted = _check_domains(domains)
    get_variation(variation)
    n_train, n_val, _ = split_counts(subjects)
    tagged = wanted != _DEFAULT_DOMAINS

    def paired(i: int) -> list[dict[str, str]]:
        d = f"{prefix}s{i:03d}/"
        if not tagged:
            return [{"id": f"phantom_{i:03d}", "source": d + "mr.nii.gz", "target": d + "ct.nii.gz",
                     "mask": d + "mask.nii.gz"}]
        return [{"id": f"phantom_{i:03d}_{dom}", "source": d + SOURCE_FILES[dom], "target": d + "ct.nii.gz",
                 "mask": d + (CBCT_MASK_FILE if dom == "cbct" else "mask.nii.gz"), keys.DOMAIN: dom} for dom in wanted]

    def items(first: int, stop: int) -> list[dict[str, str]]:
        return [item for i in range(first, stop) for item in paired(i)]

    modality = "+".join(dict.fromkeys(DOMAIN_MODALITY[d] for d in wanted))
    sources = " / ".join({"t1w": "T1w MR", "t2w": "T2w MR", "cbct": "CBCT"}[d] for d in wanted)
    description = f"Procedural paired {sources} / CT head phantom generated by drdd_med.data.phantom (split by subject"
    description += "; each item names its source domain)." if tagged else ")."
    generator = {"module": "drdd_med.data.phantom", "version": _GENERATOR_VERSION, "seed": int(seed),
                 "subjects": int(subjects), "unpaired": int(unpaired), "shape": [int(s) for s in shape],
                 "spacing_mm": [float(s) for s in spacing_mm]}
    if tagged:
        generator["domains"] = list(wanted)
    if variation != "default":
        generator["variation"] = variation
        description += f" Inter-subject variation: {variation}."
    return {
        "name": "drdd_med head phantom",
        "description": description,
        "source": {"modality": modality, "normalize": source_normalize(wanted[0])},
        "target": {"modality": "CT", "normalize": dict(TARGET_NORMALIZE)},
        "training": items(0, n_train),
        "validation": items(n_train, n_train + n_val),
        "test": items(n_train + n_val, subjects),
        "unpaired_target": [{"id": f"phantom_ct_{j:03d}", "target": f"{prefix}unpaired/u{j:03d}/ct.nii.gz",
                             "mask": f"{prefix}unpaired/u{j:03d}/mask.nii.gz"} for j in range(unpaired)],
        "generator": generator,
    }


def _is_complete(folder: Path, spec: dict[str, Any]) -> bool:
    path = folder / SPEC_NAME
    if not path.is_file():
        return False
    try:
        existing = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if existing.get("generator") != spec["generator"]:
        return False
    files = [item[k] for split in ("training", "validation", "test", "unpaired_target") for item in spec[split]
             for k in (keys.SOURCE, keys.TARGET, keys.MASK) if k in item]
    return all((folder / f).is_file() for f in files)


def _write_subjects(tmp: Path, spec: dict[str, Any]) -> None:
    from drdd_med.io.nifti import save_nifti

    gen = spec["generator"]
    shape, spacing, seed = gen["shape"], gen["spacing_mm"], gen["seed"]
    domains, variation = gen.get("domains", _DEFAULT_DOMAINS), gen.get("variation", "default")
    for i in range(gen["subjects"]):
        images, ct, mask, meta = make_phantom_subject([seed, i], shape, spacing, domains, variation)
        d = tmp / f"s{i:03d}"
        for domain, image in images.items():
            save_nifti(d / SOURCE_FILES[domain], image, meta["affine"], _SOURCE_DTYPES[domain])
        save_nifti(d / "ct.nii.gz", ct, meta["affine"], np.int16)
        save_nifti(d / "mask.nii.gz", mask, meta["affine"], np.uint8)
        if "cbct_mask" in meta:
            save_nifti(d / CBCT_MASK_FILE, meta["cbct_mask"], meta["affine"], np.uint8)
        save_nifti(d / "labels.nii.gz", meta["labels"], meta["affine"], np.uint8)
        (d / "params.json").write_text(json.dumps(meta["params"], indent=1, default=lambda a: np.asarray(a).tolist()))
    for j in range(gen["unpaired"]):
        ct, mask, meta = make_phantom_ct([seed, _UNPAIRED_OFFSET + j], shape, spacing, variation)
        d = tmp / "unpaired" / f"u{j:03d}"
        save_nifti(d / "ct.nii.gz", ct, meta["affine"], np.int16)
        save_nifti(d / "mask.nii.gz", mask, meta["affine"], np.uint8)
    (tmp / "labels.json").write_text(json.dumps({t.name: i for i, t in enumerate(TISSUES)}, indent=1))


def write_phantom_dataset(out_dir: str | Path, subjects: int = 12, unpaired: int = 16, seed: int = 0,
                          shape: Sequence[int] = DEFAULT_SHAPE, spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
                          force: bool = False, domains: Sequence[str] = _DEFAULT_DOMAINS,
                          variation: str = "default") -> Path:
    """Generate the phantom dataset into ``out_dir`` (NIfTI volumes + ``phantom.json``) and return the spec path.

    Layout: ``s000/{mr,ct,mask,labels}.nii.gz`` + ``params.json`` per paired subject, ``unpaired/u000/{ct,mask}.nii.gz``
    per CT-only subject, ``labels.json`` (tissue name -> label value) and ``phantom.json``. Training / validation /
    test are split by subject (:func:`split_counts`). Each domain's source is ``SOURCE_FILES[domain]`` (T1w:
    ``mr.nii.gz``, T2w: ``t2w.nii.gz``, CBCT: ``cbct.nii.gz`` in HU, with ``cbct_mask.nii.gz``).

    The write is atomic (everything goes to a temporary sibling folder that is renamed at the end) and idempotent:
    when ``out_dir`` already holds a complete dataset made with the same parameters, nothing is regenerated.

    Args:
        out_dir: destination folder (created).
        subjects: paired subjects (>= 3).
        unpaired: CT-only subjects for the noise stage.
        seed: dataset seed; subject i uses seed ``[seed, i]``.
        shape: (X, Y, Z) voxels.
        spacing_mm: voxel size, mm.
        force: replace an existing phantom folder made with other parameters.
        domains: source domains per subject (:func:`make_phantom_subject`); the default, T1w only, is the
            quick-start dataset.
        variation: inter-subject variation preset, ``"default"`` or ``"high"``.

    Returns:
        Path of ``phantom.json``.

    Raises:
        ValueError: ``out_dir`` exists with other content (not a phantom made with these parameters) and ``force``
            is not set.
    """
    out_dir = Path(out_dir)
    spec = phantom_spec(subjects, unpaired, seed, shape, spacing_mm, domains=domains, variation=variation)
    if _is_complete(out_dir, spec):
        logger.info("phantom dataset in %s is complete; reusing it", out_dir)
        return out_dir / SPEC_NAME
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (force and (out_dir / SPEC_NAME).is_file()):
            raise ValueError(
                f"{out_dir}: exists and is not a complete phantom made with seed={seed}, subjects={subjects}, "
                f"unpaired={unpaired}, shape={list(shape)}, domains={list(_check_domains(domains))}, "
                f"variation={variation}; choose another --out folder"
                + (" (only phantom folders are replaced)." if force else " or pass force=True (--force) to replace it.")
            )
    with atomic_dir(out_dir) as tmp:
        _write_subjects(tmp, spec)
        (tmp / SPEC_NAME).write_text(json.dumps(spec, indent=1) + "\n")
    logger.info("wrote phantom dataset (%d paired, %d CT-only subjects) to %s", subjects, unpaired, out_dir)
    return out_dir / SPEC_NAME
