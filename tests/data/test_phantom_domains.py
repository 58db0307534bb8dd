"""Phantom source domains: T1w / T2w MR and CBCT render deterministically, with the contrast and artefacts each must
have, and the generator writes a spec whose items name their domain."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from drdd_med import keys
from drdd_med.data.domains import DOMAINS
from drdd_med.data.phantom import TISSUE_INDEX, TISSUES, make_phantom_pair, make_phantom_subject, write_phantom_dataset
from drdd_med.data.phantom.cbct import synthesize_cbct
from drdd_med.data.phantom.ct import ct_numbers_image, synthesize_ct
from drdd_med.data.spec import load_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def subject(small_grid):
    return make_phantom_subject(11, domains=DOMAINS, **small_grid)


def test_every_domain_is_deterministic_and_independent_of_the_others(subject, small_grid, tiny_grid):
    images, ct, mask, meta = subject
    assert list(images) == list(DOMAINS)
    again = make_phantom_subject(11, domains=("cbct", "t2w", "t1w"), **small_grid)  # order of the request is irrelevant
    for domain in DOMAINS:
        assert images[domain].dtype == np.float32 and images[domain].shape == small_grid["shape"]
        assert images[domain].tobytes() == again[0][domain].tobytes(), domain
        alone = make_phantom_subject(11, domains=(domain,), **small_grid)
        assert alone[0][domain].tobytes() == images[domain].tobytes(), f"{domain} depends on the other domains"
        assert alone[1].tobytes() == ct.tobytes()
    other = make_phantom_subject(12, domains=DOMAINS, **small_grid)[0]
    assert all(not np.array_equal(images[d], other[d]) for d in DOMAINS)
    assert np.array_equal(make_phantom_pair(11, **small_grid)[0], images["t1w"])  # T1w is the original phantom's MR
    with pytest.raises(ValueError, match="unknown domain 'pd'"):
        make_phantom_subject(11, domains=("t1w", "pd"), **tiny_grid)
    with pytest.raises(ValueError, match="distinct"):
        make_phantom_subject(11, domains=("t1w", "t1w"), **tiny_grid)


def _medians(image: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {t.name: float(np.median(image[labels == i])) for i, t in enumerate(TISSUES) if (labels == i).sum() > 10}


def test_t2w_contrast_inverts_csf_against_t1w(subject):
    images, _, _, meta = subject
    t1, t2 = _medians(images["t1w"], meta["labels"]), _medians(images["t2w"], meta["labels"])
    assert t1["csf"] < t1["white_matter"]  # T1w: CSF dark
    assert t2["csf"] > t2["grey_matter"] > t2["white_matter"]  # T2w: CSF bright
    assert t2["csf"] > t2["fat"] > t2["muscle"]  # fat intermediate
    signal = meta["params"]["t2w"]["signal_per_tissue"]
    for dark in ("air", "air_internal", "cortical_bone"):
        assert signal[TISSUE_INDEX[dark]] < 0.05 * signal[TISSUE_INDEX["csf"]], dark
    params = meta["params"]["t2w"]
    assert params["tr_ms"] >= 3000 and params["te_ms"] >= 80 and images["t2w"].min() >= 0


def _water_cylinder(shape=(64, 64, 6), spacing=(3.0, 3.0, 5.0), radius_mm=75.0):
    """Fractions of a uniform muscle cylinder in air: no texture, no dense bone, so noise and cupping are measurable."""
    xy = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * d for n, d in zip(shape[:2], spacing[:2])], indexing="ij")
    inside = np.broadcast_to((np.hypot(*xy) < radius_mm)[..., None], shape)
    fractions = np.zeros((len(TISSUES), *shape), np.float32)
    fractions[TISSUE_INDEX["muscle"]] = inside
    fractions[TISSUE_INDEX["air"]] = ~inside
    return fractions, inside, np.hypot(*xy)[..., None], spacing


def test_cbct_has_more_noise_and_cupping_than_ct_on_a_uniform_cylinder():
    fractions, inside, radius, spacing = _water_cylinder()
    texture = np.zeros(inside.shape, np.float32)
    for seed in range(3):
        ct, ct_params = synthesize_ct(fractions, np.random.default_rng(seed), texture)
        clean = ct_numbers_image(fractions, np.asarray(ct_params["hu_per_tissue"]), texture)
        cbct, fov, p = synthesize_cbct(clean, inside, np.random.default_rng(seed), spacing)
        cbct = (cbct - p["calibration_intercept_hu"]) / p["calibration_slope"]  # undo the HU calibration
        centre, edge = inside & (radius < 20) & fov, inside & (radius > 45) & (radius < 60) & fov

        def noise(img):
            return float((img - ndimage.gaussian_filter(img, (2.0, 2.0, 0.0)))[centre].std())

        def cupping(img):
            return float(img[edge].mean() - img[centre].mean())

        assert noise(cbct) > 1.8 * noise(ct) and noise(cbct) > 12.0, seed
        assert abs(cupping(ct)) < 3.0 and cupping(cbct) > max(10.0, 250.0 * p["cupping"]), seed


def _fov_cylinder(grid: dict, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """(inside the FOV radius, inside the FOV length) recomputed from the CBCT's parameters."""
    axes = [(np.arange(n) - (n - 1) / 2) * d - c for n, d, c in zip(grid["shape"], grid["spacing_mm"], p["fov_centre_mm"])]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return np.hypot(x, y) <= p["fov_radius_mm"], np.abs(z) <= p["fov_half_length_mm"]


def test_cbct_of_the_head_has_cupping_a_calibration_and_a_truncated_cylindrical_fov(subject, small_grid):
    images, ct, mask, meta = subject
    cbct, p = images["cbct"], meta["params"]["cbct"]
    assert np.array_equal(cbct, np.rint(cbct)) and cbct.min() >= keys.HU_MIN and cbct.max() <= keys.HU_MAX
    # the field of view, recomputed from its parameters: a cylinder about z; outside it the CBCT is air
    spacing, shape = small_grid["spacing_mm"], small_grid["shape"]
    radial, axial = _fov_cylinder(small_grid, p)
    cylinder = radial & axial
    assert np.all(cbct[~cylinder] == keys.HU_AIR) and (~cylinder).any()
    assert np.array_equal(meta["cbct_mask"] > 0, (mask > 0) & cylinder)
    # cupping in the brain (calibration undone): deep tissue darker than superficial tissue, unlike the CT
    labels = meta["labels"]
    brain = np.isin(labels, [TISSUE_INDEX["grey_matter"], TISSUE_INDEX["white_matter"]])
    brain = ndimage.binary_erosion(brain) & cylinder
    depth = np.stack([ndimage.distance_transform_edt(mask[..., k], sampling=spacing[:2]) for k in range(shape[2])], -1)
    corrected = (cbct - p["calibration_intercept_hu"]) / p["calibration_slope"]

    def cupping(img):
        return float(img[brain & (depth < 25)].mean() - img[brain & (depth > 45)].mean())

    assert cupping(corrected) > cupping(ct) + 15.0
    assert 0.88 <= p["calibration_slope"] <= 1.08 and abs(p["calibration_intercept_hu"]) <= 60
    assert p["streaks"] > 0 and 20.0 <= p["noise_hu"] <= 40.0


def test_cbct_fov_truncates_the_head_in_plane_for_some_subjects(tiny_grid):
    outside = []  # body voxels within the FOV's length but outside its radius
    for seed in range(4):
        _, _, mask, meta = make_phantom_subject([7, seed], domains=("cbct",), **tiny_grid)
        radial, axial = _fov_cylinder(tiny_grid, meta["params"]["cbct"])
        outside.append(int(((mask > 0) & axial & ~radial).sum()))
    assert max(outside) > 0  # the skull edge can fall outside the field of view
    assert min(outside) < max(outside)


def test_multi_domain_dataset_spec_names_each_items_domain(tmp_path, tiny_grid):
    jsonschema = pytest.importorskip("jsonschema")
    spec_path = write_phantom_dataset(tmp_path / "ph", subjects=3, unpaired=1, seed=2, domains=("cbct", "t1w", "t2w"),
                                      **tiny_grid)
    raw = json.loads(spec_path.read_text())
    jsonschema.validate(raw, json.loads((REPO / "data_specs/schema.json").read_text()))
    assert raw["generator"]["domains"] == list(DOMAINS) and "variation" not in raw["generator"]
    assert raw["source"]["modality"] == "MR+CBCT"
    spec = load_spec(spec_path)
    assert spec.domains() == list(DOMAINS)
    for split in ("training", "validation", "test"):
        items = spec.items(split)
        assert [it[keys.DOMAIN] for it in items] == list(DOMAINS)
        assert len({it[keys.TARGET] for it in items}) == 1  # one subject, its CT paired with every domain
        assert [it["id"].rsplit("_", 1)[1] for it in items] == list(DOMAINS)
        assert [Path(it[keys.MASK]).name for it in items] == ["mask.nii.gz", "mask.nii.gz", "cbct_mask.nii.gz"]
    # the noise stage sees each CT once
    assert len(spec.target_items()) == 1 + 1
    norms = [spec.source_norm_for(it).type for it in spec.items("training")]
    assert norms == ["percentile", "percentile", "range"]
    # the files hold what the generator renders, CBCT as int16 HU
    train = spec.items("training")
    images, _, _, meta = make_phantom_subject([2, 0], domains=DOMAINS, **tiny_grid)
    for item in train:
        stored = nib.load(item[keys.SOURCE])
        assert stored.get_data_dtype() == (np.int16 if item[keys.DOMAIN] == "cbct" else np.float32)
        np.testing.assert_array_equal(np.asarray(stored.dataobj), images[item[keys.DOMAIN]])
    np.testing.assert_array_equal(np.asarray(nib.load(train[2][keys.MASK]).dataobj), meta["cbct_mask"])
    params = json.loads((tmp_path / "ph/s000/params.json").read_text())
    assert {"anatomy", "ct", "mr", "t2w", "cbct"} <= set(params)
    stamp = spec_path.stat().st_mtime_ns
    write_phantom_dataset(tmp_path / "ph", subjects=3, unpaired=1, seed=2, domains=("t1w", "t2w", "cbct"), **tiny_grid)
    assert spec_path.stat().st_mtime_ns == stamp  # complete: reused
    with pytest.raises(ValueError, match=r"domains=\['t1w'\]"):
        write_phantom_dataset(tmp_path / "ph", subjects=3, unpaired=1, seed=2, **tiny_grid)


def test_t1w_only_dataset_keeps_the_original_spec(tmp_path, tiny_grid):
    plain = json.loads(write_phantom_dataset(tmp_path / "a", subjects=3, unpaired=0, **tiny_grid).read_text())
    explicit = write_phantom_dataset(tmp_path / "b", subjects=3, unpaired=0, domains=["t1w"], **tiny_grid)
    explicit = json.loads(explicit.read_text())
    assert plain == explicit
    assert "domains" not in plain["generator"] and all(keys.DOMAIN not in it for it in plain["training"])
    assert sorted(p.name for p in (tmp_path / "a/s000").iterdir()) == [
        "ct.nii.gz", "labels.nii.gz", "mask.nii.gz", "mr.nii.gz", "params.json"]
