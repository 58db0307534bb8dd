"""From data specs to MONAI datalists and back: split by subject, write spec JSON atomically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from drdd_med.data.spec import SPLITS, DatasetSpec
from drdd_med.io.atomic import write_atomic

__all__ = ["datalists", "split_subjects", "write_spec_json"]


def datalists(spec: DatasetSpec) -> dict[str, list[dict[str, str]]]:
    """All MONAI datalists of a spec: its splits plus ``"noise"`` (training targets + unpaired targets).

    Args:
        spec: a loaded spec.

    Returns:
        ``{"training", "validation", "test", "unpaired_target", "noise"}`` -> lists of item dicts (absolute paths).
    """
    out = {split: spec.items(split) for split in SPLITS}
    out["noise"] = spec.target_items()
    return out


def split_subjects(subject_ids: Sequence[str], val_fraction: float = 0.15, test_fraction: float = 0.15,
                   seed: int = 0) -> dict[str, list[str]]:
    """Deterministic random split of subject ids (never of slices) into training / validation / test.

    Args:
        subject_ids: unique subject identifiers.
        val_fraction: fraction for validation (at least one subject when > 0 and there are >= 3 subjects).
        test_fraction: fraction for test (same rule).
        seed: shuffling seed.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, each sorted.
    """
    ids = sorted(set(subject_ids))
    if len(ids) != len(subject_ids):
        raise ValueError("split_subjects: subject ids must be unique.")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]

    def count(frac: float) -> int:
        return 0 if frac <= 0 else max(1 if len(ids) >= 3 else 0, int(round(frac * len(ids))))

    n_val, n_test = count(val_fraction), count(test_fraction)
    if n_val + n_test >= len(ids):
        raise ValueError(f"split_subjects: {len(ids)} subjects leave none for training with val={val_fraction}, test={test_fraction}.")
    return {"validation": sorted(order[:n_val]), "test": sorted(order[n_val:n_val + n_test]),
            "training": sorted(order[n_val + n_test:])}


def write_spec_json(path: str | Path, spec: dict[str, Any]) -> Path:
    """Write a spec dict as indented JSON atomically (:func:`~drdd_med.io.atomic.write_atomic`)."""
    return write_atomic(path, json.dumps(spec, indent=1) + "\n")
