"""Bundle data: the data spec behind ``--datalist`` (phantom created on first use) and its MONAI datalists.

The bundle's default datalist is the embedded phantom's spec, ``<dataset_dir>/phantom/phantom.json``. When that file
is requested and missing, :func:`prepare_spec` generates the phantom there first (idempotent, atomic), so
``python -m monai.bundle run training --config_file bundles/drdd/train.json`` works on a fresh clone. Any other
spec is validated by :func:`~drdd_med.data.spec.load_spec` before training starts, which lists every problem at once.

A spec whose items name their source ``domain`` trains one model for all of them: the datalists keep each item's
domain, so that the pipelines normalise each source with its domain's setting; such a spec must name the domain of
every paired item (a model cannot be asked at inference for a domain it was never told).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from drdd_med import keys
from drdd_med.data.spec import DatasetSpec, NormalizeSpec, SpecError, load_spec

__all__ = [
    "PHANTOM_SPEC", "evaluation_cases", "input_datalist", "is_embedded_phantom", "mask_key", "noise_items", "norm_dict", "paired_items",
    "prepare_spec",
]

logger = logging.getLogger(__name__)

#: File name of the phantom's spec inside its folder.
PHANTOM_SPEC = "phantom.json"


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return Path(os.path.abspath(os.path.expanduser(str(a)))) == Path(os.path.abspath(os.path.expanduser(str(b))))


def is_embedded_phantom(datalist: str | os.PathLike, dataset_dir: str | os.PathLike) -> bool:
    """True when ``datalist`` is the bundle's embedded phantom spec, ``<dataset_dir>/phantom/phantom.json`` (the
    quick start, whose training the bundle fits to a time budget)."""
    return _same_path(datalist, Path(dataset_dir) / "phantom" / PHANTOM_SPEC)


def prepare_spec(datalist: str | os.PathLike, phantom_dir: str | os.PathLike | None = None,
                 phantom: Mapping[str, Any] | None = None) -> DatasetSpec:
    """Load the training data spec, generating the embedded phantom first when it is the one asked for.

    Args:
        datalist: a data spec JSON (``data_specs`` format).
        phantom_dir: folder of the bundle's phantom; when ``datalist`` is ``<phantom_dir>/phantom.json`` and the
            dataset there is missing or incomplete, it is generated (by rank 0 only in a distributed run; the
            other ranks wait). None never generates anything.
        phantom: :func:`~drdd_med.data.phantom.write_phantom_dataset` options (``subjects``, ``unpaired``, ``seed``,
            ``shape``, ``spacing_mm``).

    Returns:
        The validated spec (absolute paths).

    Raises:
        SpecError: the spec is invalid; the message lists every problem (key, index, path).
    """
    if phantom_dir is not None and _same_path(datalist, Path(phantom_dir) / PHANTOM_SPEC):
        _ensure_phantom(Path(phantom_dir), dict(phantom or {}))
    spec = load_spec(datalist)
    _check_domains_named(spec)
    logger.info("data spec %s: %d training, %d validation, %d test, %d unpaired target item(s)", spec.path,
                *(len(spec.items(s)) for s in ("training", "validation", "test", "unpaired_target")))
    return spec


def _check_domains_named(spec: DatasetSpec) -> None:
    """Refuse a spec in which some items name their source domain and others do not."""
    if not spec.domains():
        return
    unnamed = [f"{split}[{i}]" for split in ("training", "validation", "test")
               for i, item in enumerate(spec.items(split)) if keys.DOMAIN not in item]
    if unnamed:
        raise SpecError(f"{spec.path}: items name the source domains {', '.join(spec.domains())}, but "
                        f"{', '.join(unnamed[:5])}{' ...' if len(unnamed) > 5 else ''} name none; give every item "
                        "a 'domain' (or none of them).")


def _ensure_phantom(folder: Path, options: dict[str, Any]) -> None:
    import torch.distributed as dist

    from drdd_med.data.phantom import write_phantom_dataset

    distributed = dist.is_available() and dist.is_initialized()
    if not distributed or dist.get_rank() == 0:
        if not (folder / PHANTOM_SPEC).is_file():
            logger.info("creating the phantom dataset in %s (first use)", folder)
        write_phantom_dataset(folder, **options)
    if distributed:
        dist.barrier()  # the other ranks read the dataset only once it is complete


def norm_dict(norm: NormalizeSpec | Mapping[str, Any]) -> dict[str, Any]:
    """A spec's intensity mapping as the plain dict that ``ModelConfig.source_normalize`` / ``target_normalize`` hold."""
    if isinstance(norm, Mapping):
        return dict(norm)
    if norm.type == "percentile":
        return {"type": "percentile", "lower": float(norm.lower), "upper": float(norm.upper)}
    return {"type": "range", "a_min": float(norm.a_min), "a_max": float(norm.a_max)}


def mask_key(items: Sequence[Mapping[str, str]]) -> str | None:
    """``keys.MASK`` when every item has a mask (so a pipeline sees the same keys for all items), else None."""
    return keys.MASK if items and all(keys.MASK in item for item in items) else None


def paired_items(spec: DatasetSpec, split: str = "training") -> list[dict[str, str]]:
    """Paired items of ``split`` for the residual stage / validation, with their domains; masks kept only when
    every item has one.

    Raises:
        ValueError: the split has no item.
    """
    items = spec.items(split)
    if not items:
        raise ValueError(f"{spec.path}: split {split!r} is empty; add paired items (source, target) to it.")
    keep = mask_key(items) is not None
    wanted = (keys.SOURCE, keys.TARGET, keys.DOMAIN) + ((keys.MASK,) if keep else ())
    return [{k: v for k, v in item.items() if k in wanted} for item in items]


def noise_items(spec: DatasetSpec) -> list[dict[str, str]]:
    """Target-only items for the noise stage: the training targets plus ``unpaired_target`` (no masks)."""
    return [{keys.TARGET: item[keys.TARGET]} for item in spec.target_items(with_mask=False)]


def evaluation_cases(spec: DatasetSpec, split: str = "validation") -> list[dict[str, str]]:
    """Items of ``split`` that have a target CT, with ids; falls back to ``test`` / ``validation`` when empty.

    Raises:
        ValueError: no split of the spec has cases with a target.
    """
    order = [split] + [s for s in ("validation", "test") if s != split]
    for name in order:
        cases = [item for item in spec.items(name) if keys.TARGET in item]
        if cases:
            if name != split:
                logger.warning("split %r has no case with a target; evaluating split %r instead", split, name)
            return cases
    raise ValueError(f"{spec.path}: no validation or test case with a target CT to evaluate; add some to the spec.")


def input_datalist(inputs: Any) -> list[dict[str, str]]:
    """Inference items ``[{"image": path}]`` from ``--input`` (a NIfTI file, a DICOM folder, or a list of them).

    Raises:
        ValueError: no input given, or a path that does not exist.
    """
    if inputs is None or inputs == "" or inputs == []:
        raise ValueError("no input: pass --input <NIfTI file or DICOM series folder> (or a list of them).")
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    missing = [str(p) for p in paths if not Path(os.path.expanduser(str(p))).exists()]
    if missing:
        raise ValueError(f"--input: these paths do not exist: {missing}; pass NIfTI files or DICOM series folders.")
    return [{keys.IMAGE: os.path.abspath(os.path.expanduser(str(p)))} for p in paths]
