"""Pipelines of a dataset that mixes source domains: each source is normalised with its own domain's setting, the
class label of a domain-embedding model is added, and a dataset without domains is normalised as before."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from drdd_med import keys
from drdd_med.data.domains import SOURCE_NORMALIZE
from drdd_med.transforms.array import percentile_window, window_to_unit
from drdd_med.transforms.pipelines import train_transforms, val_transforms

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
PERCENTILE = {"type": "percentile", "lower": 0.5, "upper": 99.5}


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """An MR-like volume (arbitrary units), a CBCT-like volume in HU and a CT, on one RAS grid."""
    folder = tmp_path_factory.mktemp("domains")
    rng = np.random.default_rng(0)
    arrays = {"mr": rng.gamma(2.0, 200.0, size=(16, 16, 6)), "cbct": rng.uniform(-1100, 2500, size=(16, 16, 6)),
              "ct": rng.uniform(-1024, 3071, size=(16, 16, 6))}
    paths = {}
    for name, array in arrays.items():
        paths[name] = str(folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(array.astype(np.float32), AFFINE), paths[name])
    return paths, {k: v.astype(np.float32) for k, v in arrays.items()}


def _item(paths, source, domain=None):
    item = {keys.SOURCE: paths[source], keys.TARGET: paths["ct"]}
    return item if domain is None else {**item, keys.DOMAIN: domain}


def test_each_item_is_normalised_with_its_domains_setting(volumes):
    paths, arrays = volumes
    pipeline = val_transforms("2d", source_norm=PERCENTILE, mask_key=None, domain_norms=SOURCE_NORMALIZE)
    cbct = pipeline(_item(paths, "cbct", "cbct"))[keys.SOURCE][0].numpy()
    np.testing.assert_allclose(cbct, window_to_unit(arrays["cbct"], -1024, 3071), atol=1e-6)
    mr = pipeline(_item(paths, "mr", "t2w"))[keys.SOURCE][0].numpy()
    np.testing.assert_allclose(mr, window_to_unit(arrays["mr"], *percentile_window(arrays["mr"])), atol=1e-5)
    # the same CBCT volume without a domain falls back to the spec's setting (percentiles): another mapping
    fallback = pipeline(_item(paths, "cbct"))[keys.SOURCE][0].numpy()
    assert np.abs(fallback - cbct).max() > 0.05
    with pytest.raises(RuntimeError) as info:  # MONAI wraps the transform's error
        pipeline(_item(paths, "mr", "pd"))
    assert "source domain 'pd' has no normalisation" in str(info.value.__cause__)


def test_without_domain_settings_the_pipeline_is_todays(volumes):
    paths, _ = volumes
    plain = val_transforms("2d", source_norm=PERCENTILE, mask_key=None)
    with_domains = val_transforms("2d", source_norm=PERCENTILE, mask_key=None, domain_norms=SOURCE_NORMALIZE)
    for item in (_item(paths, "mr"), _item(paths, "cbct")):
        a, b = plain(item), with_domains(item)
        assert torch.equal(a[keys.SOURCE], b[keys.SOURCE]) and torch.equal(a[keys.TARGET], b[keys.TARGET])
        assert keys.DOMAIN_INDEX not in a and keys.DOMAIN_INDEX not in b


def test_training_samples_carry_the_class_label_of_their_domain(volumes):
    paths, arrays = volumes
    domains = ["t1w", "t2w", "cbct"]
    pipeline = train_transforms("2d", source_norm=PERCENTILE, roi_size=(8, 8), num_samples=3, mask_key=None,
                                domain_norms=SOURCE_NORMALIZE, domain_labels=domains)
    samples = pipeline(_item(paths, "cbct", "cbct"))
    assert [int(s[keys.DOMAIN_INDEX]) for s in samples] == [2, 2, 2]
    window = window_to_unit(arrays["cbct"], -1024, 3071)
    for sample in samples:  # every crop of the CBCT is in the HU window's units
        values = sample[keys.SOURCE].numpy().ravel()
        assert np.isin(np.round(values, 5), np.round(window.ravel(), 5)).all()
    assert [int(s[keys.DOMAIN_INDEX]) for s in pipeline(_item(paths, "mr", "t1w"))] == [0, 0, 0]
    with pytest.raises(RuntimeError) as info:
        pipeline(_item(paths, "mr"))
    assert "a domain-embedding model needs one of ['t1w', 't2w', 'cbct']" in str(info.value.__cause__)
