"""The documented inference command, ``python -m monai.bundle run --config_file bundles/drdd/inference.json
--num_samples 2 ...``, on a tiny untrained bundle: mean sCT and std map on the input's grid, as SCTPredictor gives."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from bundle_cli import run_bundle

from drdd_med.data.phantom.generate import make_phantom_pair
from drdd_med.keys import HU_MAX, HU_MIN
from drdd_med.workflows.predictor import SCTPredictor

pytestmark = pytest.mark.slow

#: Flipped, slightly rotated, anisotropic: a grid that only a correct inversion gives back.
_C, _S = np.cos(0.2), np.sin(0.2)
AFFINE = np.array([[-6.0 * _C, -7.0 * _S, 0.0, 90.0], [-6.0 * _S, 7.0 * _C, 0.0, -80.0], [0.0, 0.0, -10.5, 70.0],
                   [0.0, 0.0, 0.0, 1.0]])


def test_inference_json_with_two_samples_writes_mean_and_std_on_the_input_grid(tmp_path, make_tiny_bundle):
    bundle = make_tiny_bundle(seed=1)
    mr, _, mask, _ = make_phantom_pair(0, shape=(32, 32, 16), spacing_mm=(6.0, 7.0, 10.5))
    source = tmp_path / "case1.nii.gz"
    nib.save(nib.Nifti1Image(mr, AFFINE), source)
    out = tmp_path / "out"
    run_bundle("run", "--config_file", "bundles/drdd/inference.json", "--bundle_root", str(bundle),
               "--input", str(source), "--output_dir", str(out), "--num_samples", "2", "--device", "cpu")

    sct_image, std_image = nib.load(out / "case1_sct.nii.gz"), nib.load(out / "case1_sct_std.nii.gz")
    for image, dtype in ((sct_image, np.int16), (std_image, np.float32)):
        assert image.shape == mr.shape and image.get_data_dtype() == dtype
        np.testing.assert_allclose(image.affine, AFFINE, atol=1e-4)
    sct, std = np.asarray(sct_image.dataobj), np.asarray(std_image.dataobj)
    body = mask > 0
    # the samples are clamped to the HU window: where the mean lies strictly inside it, they cannot both be equal
    inside = body & (sct > HU_MIN) & (sct < HU_MAX)
    assert inside.sum() > 0.5 * body.sum()
    assert (std[inside] > 0).all()

    # the bundle is a thin caller of SCTPredictor: the same files as the in-process engine
    expected = SCTPredictor.from_bundle(bundle, device="cpu", num_samples=2).predict(source)
    assert np.array_equal(sct, expected.hu[0].numpy().astype(np.int16))
    np.testing.assert_allclose(std, expected.std_hu[0].numpy(), rtol=1e-5, atol=1e-3)
