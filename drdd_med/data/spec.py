"""Load and validate a data spec (``data_specs/`` format) before any training starts.

A spec is one JSON file; paths are relative to its folder or absolute, and each value is a NIfTI file or a DICOM
series folder. :func:`load_spec` collects every schema error and every missing or unreadable path, then raises one
:class:`SpecError` listing all of them (key and index included), so a user fixes a spec in one pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drdd_med import keys
from drdd_med.data.domains import DOMAINS, SOURCE_NORMALIZE

__all__ = ["DatasetSpec", "NormalizeSpec", "SpecError", "SPLITS", "load_spec", "validate_spec_dict"]

#: Split name -> (required item keys, optional item keys).
SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "training": ((keys.SOURCE, keys.TARGET), (keys.MASK,)),
    "validation": ((keys.SOURCE, keys.TARGET), (keys.MASK,)),
    "test": ((keys.SOURCE,), (keys.TARGET, keys.MASK)),
    "unpaired_target": ((keys.TARGET,), (keys.MASK,)),
}
_TOP_LEVEL = {"name", "description", "source", "target", "generator", "license", "reference", "$schema", *SPLITS}
_PATH_KEYS = (keys.SOURCE, keys.TARGET, keys.MASK)
#: Splits whose items may name their source domain (``keys.DOMAIN``, one of ``DOMAINS``).
_DOMAIN_SPLITS = ("training", "validation", "test")


class SpecError(ValueError):
    """A data spec is invalid; the message lists every problem found, one per line."""


@dataclass(frozen=True)
class NormalizeSpec:
    """Intensity mapping of one modality to [-1, 1].

    Attributes:
        type: ``"percentile"`` (per-image percentiles ``lower``..``upper`` -> [-1, 1], for MR) or ``"range"``
            (fixed window ``a_min``..``a_max`` -> [-1, 1], e.g. HU for CT/CBCT); values outside are clipped.
        lower: lower percentile in [0, 100).
        upper: upper percentile in (lower, 100].
        a_min: window minimum (HU for CT).
        a_max: window maximum.
    """

    type: str = "range"
    lower: float = 0.5
    upper: float = 99.5
    a_min: float = keys.HU_MIN
    a_max: float = keys.HU_MAX


DEFAULT_SOURCE_NORM = NormalizeSpec(type="percentile")
DEFAULT_TARGET_NORM = NormalizeSpec(type="range")


@dataclass
class DatasetSpec:
    """A validated data spec with absolute paths.

    Attributes:
        path: the spec file.
        name: dataset name.
        description: free text.
        source_modality: e.g. ``"MR"`` or ``"CBCT"``.
        target_modality: e.g. ``"CT"``.
        source_norm: intensity mapping of the source.
        target_norm: intensity mapping of the target.
        splits: split name -> list of items ``{keys.SOURCE / TARGET / MASK: absolute path, "id": str?,
            keys.DOMAIN: str?}``.
    """

    path: Path
    name: str
    description: str
    source_modality: str
    target_modality: str
    source_norm: NormalizeSpec
    target_norm: NormalizeSpec
    splits: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def items(self, split: str) -> list[dict[str, str]]:
        """MONAI-style items of one split (copies; absolute paths keyed by keys.SOURCE / TARGET / MASK).

        Args:
            split: ``"training"``, ``"validation"``, ``"test"`` or ``"unpaired_target"``.

        Returns:
            List of dicts (empty when the spec has no such split).
        """
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {sorted(SPLITS)}.")
        return [dict(item) for item in self.splits.get(split, [])]

    def domains(self) -> list[str]:
        """The source domains the items name (``keys.DOMAIN``), in :data:`DOMAINS` order; empty when none does."""
        named = {it[keys.DOMAIN] for split in _DOMAIN_SPLITS for it in self.splits.get(split, []) if keys.DOMAIN in it}
        return [d for d in DOMAINS if d in named]

    def source_norm_for(self, item: Mapping[str, Any]) -> NormalizeSpec:
        """Source normalisation of one item: its domain's (``SOURCE_NORMALIZE``) when it names one, else the spec's."""
        domain = item.get(keys.DOMAIN)
        if domain is None:
            return self.source_norm
        return _check_norm({"normalize": SOURCE_NORMALIZE[domain]}, domain, self.source_norm, [])

    def target_items(self, with_mask: bool | None = None) -> list[dict[str, str]]:
        """Target-only items for the noise stage: training targets followed by ``unpaired_target``.

        A target that domain-tagged training items share (one subject's CT paired with its sources of several
        domains) appears once, with the mask of its first item.

        Args:
            with_mask: True keeps masks (every item must have one), False drops them, None keeps masks only when
                every item has one (so a MONAI pipeline sees the same keys for all items).

        Returns:
            List of ``{keys.TARGET: path[, keys.MASK: path]}`` dicts.
        """
        pool, seen = [], set()
        for it in self.items("training") + self.items("unpaired_target"):
            if keys.DOMAIN in it and it[keys.TARGET] in seen:
                continue
            seen.add(it[keys.TARGET])
            pool.append({k: v for k, v in it.items() if k not in (keys.SOURCE, keys.DOMAIN)})
        all_masked = all(keys.MASK in it for it in pool)
        if with_mask and not all_masked:
            raise SpecError(f"{self.path}: target_items(with_mask=True) but some training/unpaired_target items have no mask.")
        keep = all_masked if with_mask is None else with_mask
        return [{k: v for k, v in it.items() if k != keys.MASK or keep} for it in pool]


def _check_norm(section: Any, where: str, default: NormalizeSpec, errors: list[str]) -> NormalizeSpec:
    norm = section.get("normalize") if isinstance(section, Mapping) else None
    if norm is None:
        return default
    if not isinstance(norm, Mapping):
        errors.append(f"{where}.normalize: must be an object, got {type(norm).__name__}.")
        return default
    kind = norm.get("type")
    allowed = {"percentile": {"type", "lower", "upper"}, "range": {"type", "a_min", "a_max"}}
    if kind not in allowed:
        errors.append(f"{where}.normalize.type: must be 'percentile' or 'range', got {kind!r}.")
        return default
    for k in sorted(set(norm) - allowed[kind]):
        errors.append(f"{where}.normalize: unknown key {k!r} for type {kind!r} (allowed: {sorted(allowed[kind])}).")
    values = {k: norm.get(k, getattr(default if default.type == kind else NormalizeSpec(kind), k)) for k in allowed[kind] - {"type"}}
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            errors.append(f"{where}.normalize.{k}: must be a number, got {v!r}.")
            return default
    if kind == "percentile" and not 0 <= values["lower"] < values["upper"] <= 100:
        errors.append(f"{where}.normalize: need 0 <= lower < upper <= 100, got lower={values['lower']}, upper={values['upper']}.")
    if kind == "range" and not values["a_min"] < values["a_max"]:
        errors.append(f"{where}.normalize: need a_min < a_max, got a_min={values['a_min']}, a_max={values['a_max']}.")
    return NormalizeSpec(type=kind, **{k: float(v) for k, v in values.items()})


def _check_path(raw: str, base: Path, where: str, errors: list[str]) -> str:
    path = Path(os.path.expanduser(raw))
    path = path if path.is_absolute() else base / path
    lower = path.name.lower()
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK) or not any(p.is_file() for p in path.iterdir()):
            errors.append(f"{where}: DICOM folder {path} is empty or unreadable.")
    elif not path.exists():
        errors.append(f"{where}: {path} does not exist.")
    elif not (lower.endswith(".nii") or lower.endswith(".nii.gz")):
        errors.append(f"{where}: {path} is neither a .nii/.nii.gz file nor a DICOM series folder.")
    else:
        try:
            import nibabel as nib

            nib.load(str(path)).header  # noqa: B018 - parses the header only
        except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, gzip errors...
            errors.append(f"{where}: {path} is unreadable as NIfTI ({type(exc).__name__}: {exc}).")
    return str(path.resolve())


def validate_spec_dict(raw: Any, base_dir: str | Path, check_paths: bool = True) -> tuple[dict[str, Any], list[str]]:
    """Check a parsed spec; returns the normalised content and the list of problems (empty when valid).

    Args:
        raw: the parsed JSON.
        base_dir: folder that relative paths are resolved against.
        check_paths: also check that every path exists and is readable.

    Returns:
        ``(content, errors)``; content holds ``name``, ``description``, modalities, ``source_norm``,
        ``target_norm`` and ``splits`` with absolute paths.
    """
    errors: list[str] = []
    base = Path(base_dir)
    if not isinstance(raw, Mapping):
        return {}, [f"the spec must be a JSON object, got {type(raw).__name__}."]
    for k in sorted(set(raw) - _TOP_LEVEL):
        errors.append(f"unknown top-level key {k!r} (allowed: {sorted(_TOP_LEVEL - {'$schema'})}).")
    for k in ("name", "description"):
        if k in raw and not isinstance(raw[k], str):
            errors.append(f"{k}: must be a string.")
    content: dict[str, Any] = {"name": str(raw.get("name", base.name)), "description": str(raw.get("description", ""))}
    for side, default_mod, default_norm in (("source", "MR", DEFAULT_SOURCE_NORM), ("target", "CT", DEFAULT_TARGET_NORM)):
        section = raw.get(side, {})
        if not isinstance(section, Mapping):
            errors.append(f"{side}: must be an object with 'modality' and 'normalize'.")
            section = {}
        for k in sorted(set(section) - {"modality", "normalize"}):
            errors.append(f"{side}: unknown key {k!r} (allowed: 'modality', 'normalize').")
        content[f"{side}_modality"] = str(section.get("modality", default_mod))
        content[f"{side}_norm"] = _check_norm(section, side, default_norm, errors)
    if not raw.get("training"):
        errors.append("training: required, a non-empty list of {source, target[, mask]} items.")
    splits: dict[str, list[dict[str, str]]] = {}
    seen: dict[str, str] = {}
    for split, (required, optional) in SPLITS.items():
        entries = raw.get(split, [])
        if not isinstance(entries, list):
            errors.append(f"{split}: must be a list of objects, got {type(entries).__name__}.")
            continue
        splits[split] = []
        for i, entry in enumerate(entries):
            where = f"{split}[{i}]"
            if not isinstance(entry, Mapping):
                errors.append(f"{where}: must be an object with keys {list(required)}, got {entry!r}.")
                continue
            for k in required:
                if k not in entry:
                    errors.append(f"{where}: missing required key {k!r}.")
            extra = ["id", keys.DOMAIN] if split in _DOMAIN_SPLITS else ["id"]
            for k in sorted(set(entry) - set(required) - set(optional) - set(extra)):
                errors.append(f"{where}: unexpected key {k!r} (allowed: {[*required, *optional, *extra]}).")
            item: dict[str, str] = {}
            for k in (*required, *optional):
                if k not in entry:
                    continue
                if not isinstance(entry[k], str) or not entry[k]:
                    errors.append(f"{where}.{k}: must be a non-empty path string, got {entry[k]!r}.")
                    continue
                item[k] = _check_path(entry[k], base, f"{where}.{k}", errors) if check_paths else str((base / entry[k]).resolve())
            if "id" in entry:
                item["id"] = str(entry["id"])
            if keys.DOMAIN in entry and split in _DOMAIN_SPLITS:
                if entry[keys.DOMAIN] in DOMAINS:
                    item[keys.DOMAIN] = entry[keys.DOMAIN]
                else:
                    errors.append(f"{where}.{keys.DOMAIN}: unknown domain {entry[keys.DOMAIN]!r} "
                                  f"(known: {', '.join(DOMAINS)}).")
            for k in (keys.SOURCE, keys.TARGET):
                if k in item and split != "unpaired_target":
                    other = seen.setdefault(item[k], split)
                    if other != split:
                        errors.append(f"{where}.{k}: {item[k]} is also used in {other}; splits must not share subjects.")
            splits[split].append(item)
    content["splits"] = splits
    return content, errors


def load_spec(path: str | Path, check_paths: bool = True) -> DatasetSpec:
    """Read, validate and resolve a data spec.

    Args:
        path: the spec JSON file.
        check_paths: check that every path exists and is readable (NIfTI header parsed, DICOM folder non-empty).

    Returns:
        The :class:`DatasetSpec`.

    Raises:
        SpecError: listing every schema error and every missing/unreadable path (with its split, index and key).

    Example:
        >>> spec = load_spec("data_specs/phantom.json")
        >>> spec.items("training")[0]["source"]  # absolute path
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the data spec ({exc}).") from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).") from exc
    content, errors = validate_spec_dict(raw, path.parent, check_paths=check_paths)
    if errors:
        listing = "\n".join(f"  - {e}" for e in errors)
        raise SpecError(f"{path}: {len(errors)} problem(s) in the data spec (see data_specs/README.md):\n{listing}")
    return DatasetSpec(path=path.resolve(), **content)
