"""SynthRAD-style folder indexing: every complete case lands in exactly one split, with paths relative to the spec."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from drdd_med.data.spec import load_spec
from drdd_med.data.synthrad import write_synthrad_spec


@pytest.mark.parametrize("source", ["mr", "cbct"])
def test_synthrad_spec_indexes_cases(tmp_path, source):
    root = tmp_path / "Task" / "brain"
    for i in range(6):
        case = root / f"1BA{i:03d}"
        case.mkdir(parents=True)
        names = [source, "ct"] + (["mask"] if i % 2 == 0 else [])
        for name in names:
            nib.save(nib.Nifti1Image(np.zeros((3, 3, 2), np.float32), np.eye(4)), str(case / f"{name}.nii.gz"))
    (root / "incomplete").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 2), np.float32), np.eye(4)), str(root / "incomplete" / "ct.nii.gz"))
    out = write_synthrad_spec(root, tmp_path / "specs" / "s.json", source=source, val_fraction=0.2, test_fraction=0.2)
    raw = json.loads(out.read_text())
    ids = sorted(item["id"] for split in ("training", "validation", "test") for item in raw[split])
    assert ids == [f"1BA{i:03d}" for i in range(6)]
    assert raw["training"][0]["source"].startswith("../Task/brain/")
    assert raw["source"]["normalize"]["type"] == ("percentile" if source == "mr" else "range")
    spec = load_spec(out)
    assert sum("mask" in it for s in ("training", "validation", "test") for it in spec.items(s)) == 3


def test_synthrad_spec_rejects_empty_root(tmp_path):
    with pytest.raises(ValueError, match="no case folder with mr.nii.gz and ct.nii.gz"):
        write_synthrad_spec(tmp_path, tmp_path / "s.json")
