"""The phantom's segmentation oracle: the generator's own anatomy, moved like the MR, painted with population HU."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from drdd_med.data.phantom.anatomy import rigid_resample
from drdd_med.data.phantom.generate import write_phantom_dataset
from drdd_med.data.phantom.oracle import oracle_applies, oracle_sct, population_ct_numbers, subject_fractions
from drdd_med.data.phantom.tissues import TISSUE_INDEX, TISSUES
from drdd_med.data.spec import load_spec
from drdd_med.metrics.functional import masked_mae
from drdd_med.workflows.evaluate import load_volume, trivial_baselines


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle") / "ph"
    write_phantom_dataset(root, subjects=3, unpaired=0, shape=(48, 48, 24), spacing_mm=(4.4, 4.4, 7.0),
                          domains=("t1w", "t2w", "cbct"))
    return root


def _volumes(folder):
    return (load_volume(folder / "ct.nii.gz")[0].astype(np.float64), load_volume(folder / "mask.nii.gz")[0] > 0,
            load_volume(folder / "labels.nii.gz")[0].astype(int))


def test_fractions_are_the_generators_own(dataset):
    gen = json.loads((dataset / "phantom.json").read_text())["generator"]
    fractions = subject_fractions([gen["seed"], 1], gen["shape"], gen["spacing_mm"])
    np.testing.assert_array_equal(np.argmax(fractions, axis=0), _volumes(dataset / "s001")[2])


def test_pure_tissue_voxels_get_the_population_ct_number(dataset):
    """Where one tissue fills a voxel of the moved anatomy, the oracle is the midpoint of that tissue's range."""
    gen = json.loads((dataset / "phantom.json").read_text())["generator"]
    motion = json.loads((dataset / "s000" / "params.json").read_text())["mr"]
    fractions = subject_fractions([gen["seed"], 0], gen["shape"], gen["spacing_mm"])
    rotation, translation = (np.asarray(motion[f"misregistration_{k}"]) for k in ("rotation_deg", "translation_mm"))
    moved = np.stack([rigid_resample(f, np.asarray(gen["spacing_mm"]), rotation, translation) for f in fractions])
    sct, expected = oracle_sct(dataset / "s000" / "mr.nii.gz"), population_ct_numbers()
    checked = 0
    for k, tissue in enumerate(TISSUES):
        pure = moved[k] > 0.9999
        if pure.sum() >= 5:
            np.testing.assert_allclose(sct[pure], expected[k], atol=0.5, err_msg=tissue.name)
            checked += 1
    assert checked >= 5
    low, high = TISSUES[TISSUE_INDEX["cortical_bone"]].hu_range
    assert expected[TISSUE_INDEX["cortical_bone"]] == (low + high) / 2
    assert population_ct_numbers((0.8, 1.0))[TISSUE_INDEX["cortical_bone"]] == pytest.approx(0.9 * (low + high) / 2)


def test_the_oracle_follows_the_mr_misregistration(dataset, tmp_path):
    """The same subject with its MR motion set to zero: the oracle moves with it, and sits closer to the CT."""
    ct, mask, _ = _volumes(dataset / "s000")
    moved = oracle_sct(dataset / "s000" / "mr.nii.gz")
    copy = tmp_path / "ph"
    shutil.copytree(dataset, copy)
    params = json.loads((copy / "s000" / "params.json").read_text())
    params["mr"]["misregistration_rotation_deg"] = [0.0, 0.0, 0.0]
    params["mr"]["misregistration_translation_mm"] = [0.0, 0.0, 0.0]
    (copy / "s000" / "params.json").write_text(json.dumps(params))
    aligned = oracle_sct(copy / "s000" / "mr.nii.gz")
    assert np.abs(aligned - moved).max() > 100.0
    assert masked_mae(ct, aligned, mask) < masked_mae(ct, moved, mask) - 5.0
    # T2w is a separate acquisition: its own motion
    t2w = oracle_sct(dataset / "s000" / "t2w.nii.gz")
    assert np.abs(t2w - moved).max() > 100.0


def test_oracle_beats_water_and_is_a_floor_not_zero(dataset):
    ct, mask, _ = _volumes(dataset / "s002")
    oracle = masked_mae(ct, oracle_sct(dataset / "s002" / "mr.nii.gz"), mask)
    water = masked_mae(ct, np.where(mask, 0.0, -1000.0), mask)
    assert 20.0 < oracle < 0.6 * water


def test_only_phantom_mr_cases_get_an_oracle_row(dataset, tmp_path):
    spec = load_spec(dataset / "phantom.json")
    mr = [c for c in spec.items("test") if c["domain"] != "cbct"]
    cbct = [c for c in spec.items("test") if c["domain"] == "cbct"]
    assert oracle_applies(mr) and not oracle_applies(cbct) and not oracle_applies([])
    norm = {"lower": 0.5, "upper": 99.5}
    assert "oracle" in trivial_baselines(spec.items("training"), norm, mr)
    assert "oracle" not in trivial_baselines(spec.items("training"), norm, mr + cbct)
    stray = tmp_path / "s000"
    shutil.copytree(dataset / "s000", stray)  # a subject folder without its phantom.json one folder up
    assert not oracle_applies([{"source": str(stray / "mr.nii.gz")}])
    with pytest.raises(ValueError, match="not a T1w/T2w source of a drdd_med phantom subject"):
        oracle_sct(stray / "mr.nii.gz")
