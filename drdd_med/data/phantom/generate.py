"""Seeded paired head MR/CT phantoms and the on-disk phantom dataset (NIfTI + data spec).

Default geometry: 96 x 96 x 48 voxels of 2.2 x 2.2 x 3.5 mm (a 211 x 211 x 168 mm field of view from the maxillary
sinuses to the vertex). Axial slices are 96 x 96, small enough to train a 2D model on CPU; the default set is 12
paired subjects (8 training, 2 validation, 2 test) and 16 CT-only subjects for the noise stage.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from drdd_med.data.phantom.anatomy import build_anatomy, smooth_field
from drdd_med.data.phantom.ct import synthesize_ct
from drdd_med.data.phantom.mr import synthesize_mr
from drdd_med.data.phantom.tissues import TISSUES

__all__ = [
    "DEFAULT_SHAPE", "DEFAULT_SPACING_MM", "SPEC_NAME", "make_phantom_pair", "make_phantom_ct",
    "phantom_spec", "split_counts", "write_phantom_dataset",
]

logger = logging.getLogger(__name__)

DEFAULT_SHAPE = (96, 96, 48)
DEFAULT_SPACING_MM = (2.2, 2.2, 3.5)
SPEC_NAME = "phantom.json"
_GENERATOR_VERSION = 1
_UNPAIRED_OFFSET = 100_000  # unpaired subjects use a disjoint seed range


def _subject(seed: int | Sequence[int], shape: Sequence[int], spacing_mm: Sequence[float]) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    shape_t = tuple(int(s) for s in shape)
    spacing_t = tuple(float(s) for s in spacing_mm)
    if len(shape_t) != 3 or min(shape_t) < 4 or len(spacing_t) != 3 or min(spacing_t) <= 0:
        raise ValueError(f"phantom shape {shape} / spacing {spacing_mm}: need 3 sizes >= 4 voxels and 3 positive spacings (mm).")
    head, body_sdf, anatomy = build_anatomy(rng, shape_t, spacing_t)
    bone_texture = smooth_field(rng, shape_t, tuple(6.0 / np.asarray(spacing_t)))
    ct, ct_params = synthesize_ct(head.fractions, rng, bone_texture)
    mask = (head.membership(body_sdf) >= 0.5)
    return rng, head, mask, ct, {"anatomy": anatomy, "ct": ct_params}, spacing_t


def make_phantom_pair(seed: int | Sequence[int], shape: Sequence[int] = DEFAULT_SHAPE,
                      spacing_mm: Sequence[float] = DEFAULT_SPACING_MM) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """One paired subject: T1-weighted MR, CT and body mask on the same RAS grid.

    Args:
        seed: subject seed (an int or a sequence of ints for ``numpy.random.default_rng``); equal seeds give
            byte-identical volumes.
        shape: (X, Y, Z) voxels.
        spacing_mm: voxel size, mm.

    Returns:
        ``(mr, ct, mask, meta)``: (X, Y, Z) float32 arrays. ``mr`` is non-negative, arbitrary units; ``ct`` is in HU
        (integer values in [-1024, 3071]); ``mask`` is the body (1) vs outside air (0), sinuses included. ``meta`` has
        ``affine`` (4, 4 RAS, mm), ``labels`` ((X, Y, Z) uint8 dominant tissue, index into ``tissues``),
        ``tissues`` (names) and the drawn ``params``.

    Example:
        >>> mr, ct, mask, meta = make_phantom_pair(0, shape=(32, 32, 16), spacing_mm=(6.6, 6.6, 10.5))
    """
    rng, head, mask, ct, params, spacing_t = _subject(seed, shape, spacing_mm)
    mr, params["mr"] = synthesize_mr(head.fractions, rng, spacing_t, mask)
    meta = {"affine": head.affine, "labels": head.labels(), "tissues": [t.name for t in TISSUES], "params": params}
    return mr, ct, mask.astype(np.float32), meta


def make_phantom_ct(seed: int | Sequence[int], shape: Sequence[int] = DEFAULT_SHAPE,
                    spacing_mm: Sequence[float] = DEFAULT_SPACING_MM) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A CT-only subject (no MR synthesis, so cheaper): ``(ct, mask, meta)`` as in :func:`make_phantom_pair`."""
    _, head, mask, ct, params, _ = _subject(seed, shape, spacing_mm)
    meta = {"affine": head.affine, "labels": head.labels(), "tissues": [t.name for t in TISSUES], "params": params}
    return ct, mask.astype(np.float32), meta


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
                 prefix: str = "") -> dict[str, Any]:
    """The data spec (data_specs format) of a phantom dataset; paths are ``prefix`` + folder-relative paths."""
    n_train, n_val, _ = split_counts(subjects)

    def paired(i: int) -> dict[str, str]:
        d = f"{prefix}s{i:03d}/"
        return {"id": f"phantom_{i:03d}", "source": d + "mr.nii.gz", "target": d + "ct.nii.gz", "mask": d + "mask.nii.gz"}

    items = [paired(i) for i in range(subjects)]
    return {
        "name": "drdd_med head phantom",
        "description": "Procedural paired T1w MR / CT head phantom generated by drdd_med.data.phantom (split by subject).",
        "source": {"modality": "MR", "normalize": {"type": "percentile", "lower": 0.5, "upper": 99.5}},
        "target": {"modality": "CT", "normalize": {"type": "range", "a_min": -1024, "a_max": 3071}},
        "training": items[:n_train],
        "validation": items[n_train:n_train + n_val],
        "test": items[n_train + n_val:],
        "unpaired_target": [{"id": f"phantom_ct_{j:03d}", "target": f"{prefix}unpaired/u{j:03d}/ct.nii.gz",
                             "mask": f"{prefix}unpaired/u{j:03d}/mask.nii.gz"} for j in range(unpaired)],
        "generator": {"module": "drdd_med.data.phantom", "version": _GENERATOR_VERSION, "seed": int(seed),
                      "subjects": int(subjects), "unpaired": int(unpaired), "shape": [int(s) for s in shape],
                      "spacing_mm": [float(s) for s in spacing_mm]},
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
    files = [v for split in ("training", "validation", "test", "unpaired_target") for item in spec[split]
             for k, v in item.items() if k != "id"]
    return all((folder / f).is_file() for f in files)


def _write_subjects(tmp: Path, spec: dict[str, Any]) -> None:
    from drdd_med.io.nifti import save_nifti

    gen = spec["generator"]
    shape, spacing, seed = gen["shape"], gen["spacing_mm"], gen["seed"]
    for i in range(gen["subjects"]):
        mr, ct, mask, meta = make_phantom_pair([seed, i], shape, spacing)
        d = tmp / f"s{i:03d}"
        save_nifti(d / "mr.nii.gz", mr, meta["affine"], np.float32)
        save_nifti(d / "ct.nii.gz", ct, meta["affine"], np.int16)
        save_nifti(d / "mask.nii.gz", mask, meta["affine"], np.uint8)
        save_nifti(d / "labels.nii.gz", meta["labels"], meta["affine"], np.uint8)
        (d / "params.json").write_text(json.dumps(meta["params"], indent=1, default=lambda a: np.asarray(a).tolist()))
    for j in range(gen["unpaired"]):
        ct, mask, meta = make_phantom_ct([seed, _UNPAIRED_OFFSET + j], shape, spacing)
        d = tmp / "unpaired" / f"u{j:03d}"
        save_nifti(d / "ct.nii.gz", ct, meta["affine"], np.int16)
        save_nifti(d / "mask.nii.gz", mask, meta["affine"], np.uint8)
    (tmp / "labels.json").write_text(json.dumps({t.name: i for i, t in enumerate(TISSUES)}, indent=1))


def write_phantom_dataset(out_dir: str | Path, subjects: int = 12, unpaired: int = 16, seed: int = 0,
                          shape: Sequence[int] = DEFAULT_SHAPE, spacing_mm: Sequence[float] = DEFAULT_SPACING_MM,
                          force: bool = False) -> Path:
    """Generate the phantom dataset into ``out_dir`` (NIfTI volumes + ``phantom.json``) and return the spec path.

    Layout: ``s000/{mr,ct,mask,labels}.nii.gz`` + ``params.json`` per paired subject, ``unpaired/u000/{ct,mask}.nii.gz``
    per CT-only subject, ``labels.json`` (tissue name -> label value) and ``phantom.json``. Training / validation /
    test are split by subject (:func:`split_counts`).

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

    Returns:
        Path of ``phantom.json``.

    Raises:
        ValueError: ``out_dir`` exists with other content (not a phantom made with these parameters) and ``force``
            is not set.
    """
    out_dir = Path(out_dir)
    spec = phantom_spec(subjects, unpaired, seed, shape, spacing_mm)
    if _is_complete(out_dir, spec):
        logger.info("phantom dataset in %s is complete; reusing it", out_dir)
        return out_dir / SPEC_NAME
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (force and (out_dir / SPEC_NAME).is_file()):
            raise ValueError(
                f"{out_dir}: exists and is not a complete phantom made with seed={seed}, subjects={subjects}, "
                f"unpaired={unpaired}, shape={list(shape)}; choose another --out folder"
                + (" (only phantom folders are replaced)." if force else " or pass force=True (--force) to replace it.")
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _write_subjects(tmp, spec)
        (tmp / SPEC_NAME).write_text(json.dumps(spec, indent=1) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            shutil.rmtree(old)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info("wrote phantom dataset (%d paired, %d CT-only subjects) to %s", subjects, unpaired, out_dir)
    return out_dir / SPEC_NAME
