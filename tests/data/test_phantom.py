"""Head phantom: determinism per seed, tissue contrast in CT (HU) and MR, and the atomic, idempotent dataset writer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from drdd_med.data.phantom import (
    TISSUE_INDEX, TISSUES, make_phantom_ct, make_phantom_pair, phantom_spec, write_phantom_dataset,
)
from drdd_med.data.phantom.ct import synthesize_ct
from drdd_med.data.phantom.generate import DEFAULT_SHAPE, DEFAULT_SPACING_MM
from drdd_med.data.spec import load_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def subject(small_grid):
    return make_phantom_pair(11, **small_grid)


def test_phantom_is_deterministic_per_seed(subject, small_grid):
    again = make_phantom_pair(11, **small_grid)
    for a, b in zip(subject[:3], again[:3]):
        assert a.dtype == np.float32 and a.shape == (48, 48, 24)
        assert a.tobytes() == b.tobytes()
    other = make_phantom_pair(12, **small_grid)
    assert not np.array_equal(subject[1], other[1])


def test_ct_numbers_per_tissue_follow_the_table():
    rng = np.random.default_rng(0)
    fractions = np.zeros((len(TISSUES), len(TISSUES), 20, 20), np.float32)
    for t in range(len(TISSUES)):
        fractions[t, t] = 1.0  # slab t is pure tissue t
    ct, params = synthesize_ct(fractions, rng, np.zeros(fractions.shape[1:], np.float32))
    for t, tissue in enumerate(TISSUES):
        lo, hi = tissue.hu_range
        assert lo - 1.0 <= params["hu_per_tissue"][t] <= hi + 1.0
        mean = ct[t].mean()
        tolerance = 4 * params["noise_hu"] / 20 + 0.5
        if tissue.name != "air":  # air at -1000 HU loses its lower noise tail to the -1024 clip
            assert abs(mean - params["hu_per_tissue"][t]) < tolerance, tissue.name
    assert 5 <= params["noise_hu"] <= 15
    assert np.array_equal(ct, np.rint(ct))


def test_phantom_ct_and_mr_contrast(subject):
    mr, ct, mask, meta = subject
    labels = meta["labels"]
    med_ct = {t.name: np.median(ct[labels == i]) for i, t in enumerate(TISSUES) if (labels == i).sum() > 10}
    assert med_ct["air"] < -950 and med_ct["air_internal"] < -300
    assert med_ct["cortical_bone"] > med_ct["cancellous_bone"] > 150 > med_ct["muscle"] > med_ct["fat"]
    assert -150 < med_ct["fat"] < 0 and 0 < med_ct["grey_matter"] < 80 and 0 < med_ct["white_matter"] < 80
    med_mr = {t.name: np.median(mr[labels == i]) for i, t in enumerate(TISSUES) if (labels == i).sum() > 10}
    # bone and air are both dark in T1w MR (the MR->CT ambiguity): in the signal model, and in the image despite
    # partial volume at 4.4 mm voxels (dense-bone voxels) and the MR-only misregistration
    signal = meta["params"]["mr"]["signal_per_tissue"]
    for dark in ("air", "air_internal", "cortical_bone"):
        assert signal[TISSUE_INDEX[dark]] < 0.05 * signal[TISSUE_INDEX["white_matter"]]
    assert np.median(mr[ct > 1100]) < 0.5 * med_mr["white_matter"] and med_mr["air"] < 0.1 * med_mr["white_matter"]
    assert med_mr["fat"] > med_mr["white_matter"] > med_mr["grey_matter"] > med_mr["csf"]
    assert mr.min() >= 0
    # mask = body: nearly all of it is not outside air; outside it is air
    assert np.mean(labels[mask > 0] == TISSUE_INDEX["air"]) < 0.02
    assert np.median(ct[mask == 0]) < -950
    assert 0.1 < mask.mean() < 0.8
    params = meta["params"]["mr"]
    assert 0.2 <= params["bias_peak_to_peak"] <= 0.4
    assert max(abs(v) for v in params["misregistration_translation_mm"]) <= 1.5


def test_write_phantom_dataset_is_atomic_idempotent_and_split_by_subject(tmp_path, tiny_grid):
    out = tmp_path / "phantom"
    spec_path = write_phantom_dataset(out, subjects=3, unpaired=2, seed=5, **tiny_grid)
    assert spec_path == out / "phantom.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phantom"]  # no temporary folder left
    spec = load_spec(spec_path)
    ids = {s: [it["id"] for it in spec.items(s)] for s in ("training", "validation", "test")}
    assert [len(v) for v in ids.values()] == [1, 1, 1] and len(set(sum(ids.values(), []))) == 3
    assert len(spec.items("unpaired_target")) == 2 and len(spec.target_items()) == 3
    ct = nib.load(spec.items("training")[0]["target"])
    assert ct.get_data_dtype() == np.int16 and ct.shape == tiny_grid["shape"]
    np.testing.assert_allclose(np.diag(ct.affine)[:3], tiny_grid["spacing_mm"], rtol=1e-6)
    mr, ct_arr, _, _ = make_phantom_pair([5, 0], **tiny_grid)
    np.testing.assert_array_equal(np.asarray(ct.dataobj), ct_arr)
    stamp = spec_path.stat().st_mtime_ns
    assert write_phantom_dataset(out, subjects=3, unpaired=2, seed=5, **tiny_grid) == spec_path
    assert spec_path.stat().st_mtime_ns == stamp  # reused, not regenerated
    with pytest.raises(ValueError, match="not a complete phantom made with seed=6"):
        write_phantom_dataset(out, subjects=3, unpaired=2, seed=6, **tiny_grid)
    write_phantom_dataset(out, subjects=3, unpaired=1, seed=6, force=True, **tiny_grid)
    assert json.loads(spec_path.read_text())["generator"]["seed"] == 6
    assert not (out / "unpaired" / "u001").exists()
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(ValueError, match="only phantom folders are replaced"):
        write_phantom_dataset(foreign, subjects=3, unpaired=0, force=True, **tiny_grid)
    assert (foreign / "keep.txt").exists()


def test_committed_phantom_spec_matches_the_generator_defaults():
    committed = json.loads((REPO / "data_specs/phantom.json").read_text())
    expected = phantom_spec(12, 16, 0, DEFAULT_SHAPE, DEFAULT_SPACING_MM, prefix="../bundles/drdd/data/phantom/")
    committed.pop("description"), expected.pop("description")
    assert committed == expected


#: Fingerprint of the default subject [0, 0] and of the first CT-only subject, from the quick-start generator: the
#: mask's voxel count and the tissue labels' counts (within 0.1 % + 2 voxels), the MR's and CT's mean and std (to
#: 1e-4 relative). Not a hash of the bytes: the float results differ in their last bits between CPUs and library
#: builds (a byte hash recorded on an AVX-512 machine failed on one without), while any change of the generator
#: (another subject, parameter or formula) moves these by far more.
DEFAULT_SUBJECT = {"mask": 152065, "labels": [289913, 2871, 11609, 29130, 11447, 8265, 52960, 21279, 14894],
                   "mr": (104.79335073976041, 133.03006739793233), "ct": (-589.072344744647, 598.0925284924626)}
DEFAULT_UNPAIRED = {"mask": 141520, "ct": (-620.9495374891493, 576.9020134361263)}
#: the subject's drawn parameters (anatomy, scanner, misregistration), rounded to 9 significant digits
DEFAULT_PARAMS_SHA256 = "a66fc647470652a6229d21a5f09ae30280106de6411e770b7a10a89a9b0e9fdf"


def _count_close(value: int, expected: int) -> bool:
    return abs(int(value) - expected) <= 2 + 0.001 * expected


def _moments(volume: np.ndarray) -> tuple[float, float]:
    return float(volume.mean(dtype=np.float64)), float(volume.std(dtype=np.float64))


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return float(f"{value:.9g}") if isinstance(value, float) else value


def _params_sha256(params: dict) -> str:
    return hashlib.sha256(json.dumps(_rounded(params), sort_keys=True).encode()).hexdigest()


def test_default_generation_is_unchanged():
    mr, ct, mask, meta = make_phantom_pair([0, 0])
    assert _count_close(mask.sum(), DEFAULT_SUBJECT["mask"])
    counts = np.bincount(np.asarray(meta["labels"]).ravel(), minlength=len(DEFAULT_SUBJECT["labels"])).tolist()
    assert len(counts) == len(DEFAULT_SUBJECT["labels"])
    assert all(_count_close(c, e) for c, e in zip(counts, DEFAULT_SUBJECT["labels"])), counts
    assert _moments(mr) == pytest.approx(DEFAULT_SUBJECT["mr"], rel=1e-4)
    assert _moments(ct) == pytest.approx(DEFAULT_SUBJECT["ct"], rel=1e-4)
    assert _params_sha256(meta["params"]) == DEFAULT_PARAMS_SHA256
    ct, mask, _ = make_phantom_ct([0, 100_000])
    assert _count_close(mask.sum(), DEFAULT_UNPAIRED["mask"])
    assert _moments(ct) == pytest.approx(DEFAULT_UNPAIRED["ct"], rel=1e-4)
