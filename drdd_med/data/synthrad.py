"""Write a data spec for a SynthRAD-style folder (one sub-folder per case with ct / mr or cbct / mask NIfTI).

SynthRAD2023 Task 1 (MR->CT) and Task 2 (CBCT->CT), brain and pelvis, ship as
``<root>/<case>/{ct,mr|cbct,mask}.nii.gz`` (e.g. ``Task1/brain/1BA001/mr.nii.gz``). The data must be downloaded by
the user (registration at synthrad2023.grand-challenge.org); this module only indexes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from drdd_med.data.datalist import split_subjects, write_spec_json
from drdd_med.data.domains import TARGET_NORMALIZE, source_normalize

__all__ = ["SOURCES", "synthrad_spec", "write_synthrad_spec"]

#: Source file stem -> (modality, normalize section of its domain).
SOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "mr": ("MR", source_normalize("t1w")),
    "cbct": ("CBCT", source_normalize("cbct")),
}


def synthrad_spec(root: str | Path, source: str = "mr", spec_dir: str | Path | None = None, val_fraction: float = 0.1,
                  test_fraction: float = 0.1, seed: int = 0, name: str | None = None) -> dict[str, Any]:
    """Index the cases under ``root`` into a spec dict (split by case, paths relative to ``spec_dir``).

    Args:
        root: folder with one sub-folder per case.
        source: ``"mr"`` (Task 1) or ``"cbct"`` (Task 2).
        spec_dir: folder the spec will live in (relative paths are computed from it; default ``root``).
        val_fraction: validation fraction of cases.
        test_fraction: test fraction of cases.
        seed: split seed.
        name: dataset name (default: the root folder's name).

    Returns:
        The spec dict.

    Raises:
        ValueError: unknown source, or no complete case under ``root``.
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r}: expected one of {sorted(SOURCES)}.")
    root = Path(root).resolve()
    spec_dir = Path(spec_dir).resolve() if spec_dir is not None else root
    cases = {}
    for case in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        files = {k: next((case / f"{k}{ext}" for ext in (".nii.gz", ".nii") if (case / f"{k}{ext}").is_file()), None)
                 for k in (source, "ct", "mask")}
        if files[source] is not None and files["ct"] is not None:
            cases[case.name] = files
    if not cases:
        raise ValueError(f"{root}: no case folder with {source}.nii.gz and ct.nii.gz; expected <root>/<case>/{source}.nii.gz.")

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path, spec_dir)).as_posix()

    split = split_subjects(list(cases), val_fraction, test_fraction, seed)
    modality, normalize = SOURCES[source]
    spec: dict[str, Any] = {
        "name": name or root.name, "description": f"SynthRAD-style {modality}->CT cases indexed from {root.name}",
        "source": {"modality": modality, "normalize": dict(normalize)},
        "target": {"modality": "CT", "normalize": dict(TARGET_NORMALIZE)},
    }
    for part in ("training", "validation", "test"):
        spec[part] = []
        for case in split[part]:
            files = cases[case]
            item = {"id": case, "source": rel(files[source]), "target": rel(files["ct"])}
            if files["mask"] is not None:
                item["mask"] = rel(files["mask"])
            spec[part].append(item)
    return spec


def write_synthrad_spec(root: str | Path, out: str | Path, source: str = "mr", **kwargs: Any) -> Path:
    """:func:`synthrad_spec` written to ``out`` (atomically); returns ``out``."""
    out = Path(out)
    return write_spec_json(out, synthrad_spec(root, source=source, spec_dir=out.parent, **kwargs))
