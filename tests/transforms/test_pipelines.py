"""Pipelines keep pairs voxel-aligned through every random transform, and inference round-trips geometry and HU."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, SpatialCropd
from monai.utils import set_determinism

from drdd_med import keys
from drdd_med.transforms.pipelines import (
    inference_postprocessing, inference_transforms, noise_stage_transforms, train_transforms, val_transforms,
)

warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
LPS_AFFINE = np.array([[-1.5, 0, 0, 40.0], [0, -1.2, 0, 30.0], [0, 0, 2.0, -10.0], [0, 0, 0, 1]])
RANGE = {"type": "range", "a_min": keys.HU_MIN, "a_max": keys.HU_MAX}


@pytest.fixture(scope="module")
def checker_pair(tmp_path_factory):
    """A random binary pattern shared by source (50 / 150) and target (-1000 / 1000 HU), in LPS orientation."""
    folder = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 2, size=(20, 18, 10)).astype(np.float32)
    mask = np.zeros_like(pattern)
    mask[4:14, 3:12, 2:8] = 1
    item = {}
    for key, arr in ((keys.SOURCE, 50 + 100 * pattern), (keys.TARGET, -1000 + 2000 * pattern), (keys.MASK, mask)):
        path = folder / f"{key}.nii.gz"
        nib.save(nib.Nifti1Image(arr, LPS_AFFINE), str(path))
        item[key] = str(path)
    return item


def _assert_aligned(sample, source_channel=None):
    source = sample[keys.SOURCE]
    if source_channel is not None:
        source = source[source_channel:source_channel + 1]
    assert source.shape == sample[keys.TARGET].shape
    np.testing.assert_array_equal((source > 0).numpy(), (sample[keys.TARGET] > -0.5).numpy())
    assert float(sample[keys.SOURCE].min()) == -1.0 and float(sample[keys.SOURCE].max()) <= 1.0


@pytest.mark.parametrize("mode,roi,expected", [
    ("2d", (24, 24), ((1, 24, 24), (1, 24, 24))),
    ("2.5d", (16, 16), ((3, 16, 16), (1, 16, 16))),
    ("3d", (8, 8, 8), ((1, 8, 8, 8), (1, 8, 8, 8))),
])
def test_train_pipeline_keeps_pairs_aligned(checker_pair, mode, roi, expected):
    set_determinism(0)
    pipeline = train_transforms(mode, roi_size=roi, num_samples=6, divisor=8, flip_prob=0.5)
    for _ in range(3):
        samples = pipeline(checker_pair)
        assert len(samples) == 6
        for s in samples:
            assert (tuple(s[keys.SOURCE].shape), tuple(s[keys.TARGET].shape)) == expected
            assert s[keys.MASK].shape == s[keys.TARGET].shape
            _assert_aligned(s, source_channel=1 if mode == "2.5d" else None)
    set_determinism(None)


def test_3d_patches_are_biased_to_the_mask(checker_pair):
    set_determinism(1)
    samples = train_transforms("3d", roi_size=(8, 8, 8), num_samples=40, divisor=8, pos_neg=(1.0, 0.0))(checker_pair)
    assert all(float(s[keys.MASK][0, 4, 4, 4]) == 1.0 for s in samples)  # every centre inside the mask
    set_determinism(None)


def test_noise_stage_pipeline_is_target_only(checker_pair):
    item = {keys.TARGET: checker_pair[keys.TARGET], keys.MASK: checker_pair[keys.MASK]}
    for mode, shape in (("2d", (1, 16, 16)), ("2.5d", (1, 16, 16)), ("3d", (1, 8, 8, 8))):
        roi = shape[1:]
        samples = noise_stage_transforms(mode, roi_size=roi, num_samples=2, divisor=8, mask_key=keys.MASK)(item)
        assert all(tuple(s[keys.TARGET].shape) == shape and keys.SOURCE not in s for s in samples)
        levels = {round((v - keys.HU_MIN) / (keys.HU_MAX - keys.HU_MIN) * 2 - 1, 3) for v in (-1000.0, 1000.0)}
        assert all(set(np.unique(s[keys.TARGET].numpy().astype(np.float64).round(3)).tolist()) <= levels for s in samples)


def test_val_pipeline_pads_to_divisor_with_air(checker_pair):
    out = val_transforms("2d", divisor=16)(checker_pair)
    assert tuple(out[keys.SOURCE].shape) == (1, 32, 32, 10) and out[keys.TARGET].shape == out[keys.SOURCE].shape
    _assert_aligned(out)
    padded = torch.ones(32, 32, dtype=torch.bool)
    padded[6:26, 7:25] = False  # symmetric padding of 20 x 18 to 32 x 32
    assert torch.all(out[keys.TARGET][0][padded] == -1.0) and torch.all(out[keys.MASK][0][padded] == 0.0)
    out3 = val_transforms("3d", divisor=8)(checker_pair)
    assert tuple(out3[keys.SOURCE].shape) == (1, 24, 24, 16)


def test_roi_must_match_mode_and_divisor():
    with pytest.raises(ValueError, match="multiple of the network divisor 16"):
        train_transforms("2d", roi_size=(24, 24), divisor=16)
    with pytest.raises(ValueError, match="needs 3 sizes"):
        train_transforms("3d", roi_size=(16, 16))
    with pytest.raises(ValueError, match="must be odd"):
        train_transforms("2.5d", roi_size=(16, 16), num_slices_2p5d=4)
    with pytest.raises(ValueError, match="expected one of"):
        val_transforms("4d")


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_inference_round_trips_geometry_and_hu(tmp_path, mode):
    rng = np.random.default_rng(2)
    hu = rng.integers(-1024, 3072, size=(19, 13, 7)).astype(np.float32)
    path = tmp_path / "ct_source.nii.gz"
    nib.save(nib.Nifti1Image(hu, LPS_AFFINE), str(path))
    pre = inference_transforms(mode, source_norm=RANGE, divisor=8)
    data = pre({keys.IMAGE: str(path)})
    assert data[keys.IMAGE].shape[1] % 8 == 0 and data[keys.IMAGE].shape[2] % 8 == 0
    assert np.all(np.diag(data[keys.IMAGE].affine.numpy())[:3] > 0)  # RAS
    data[keys.PRED] = data[keys.IMAGE].as_tensor().clone()  # a perfect "network": prediction = input
    out = inference_postprocessing(pre, output_dir=str(tmp_path / "out"))(data)
    pred = out[keys.PRED]
    assert pred.dtype == torch.int16 and tuple(pred.shape) == (1, 19, 13, 7)
    np.testing.assert_allclose(pred.affine.numpy(), LPS_AFFINE, atol=1e-5)
    np.testing.assert_array_equal(pred[0].numpy(), hu)
    saved = nib.load(str(tmp_path / "out" / "ct_source_sct.nii.gz"))
    assert saved.get_data_dtype() == np.int16 and saved.shape == hu.shape
    np.testing.assert_allclose(saved.affine, LPS_AFFINE, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), hu)


def test_inference_padding_becomes_air_after_inversion(tmp_path):
    """Undoing a crop pads with 0, so the prediction must be in air-is-0 units before ``Invertd``: the voxels a
    cropping preprocessing removed come back as air (HU_MIN), not as the middle of the window (about +1024 HU)."""
    hu = np.full((10, 9, 4), 40.0, np.float32)
    path = tmp_path / "src.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.eye(4)), str(path))
    pre = Compose([inference_transforms("3d", source_norm=RANGE, divisor=4),
                   SpatialCropd(keys.IMAGE, roi_start=(2, 1, 1), roi_end=(8, 7, 3))])
    data = pre({keys.IMAGE: str(path)})
    assert tuple(data[keys.IMAGE].shape) == (1, 6, 6, 2)
    data[keys.PRED] = torch.full_like(data[keys.IMAGE].as_tensor(), 0.5)
    out = inference_postprocessing(pre)(data)
    expected = np.full(hu.shape, keys.HU_MIN, np.int16)
    expected[1:7, 0:6, 1:3] = np.rint(0.75 * (keys.HU_MAX - keys.HU_MIN) + keys.HU_MIN)  # 0.5 in [-1, 1] units
    np.testing.assert_array_equal(out[keys.PRED][0].numpy(), expected)
