"""Tests for drdd_med.metrics.handlers: run through MONAI/Ignite and compare with the functional metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine

from drdd_med.metrics.functional import masked_mae, masked_psnr, masked_ssim
from drdd_med.metrics.handlers import (
    NON_SYNTHRAD,
    HUMAEMetric,
    HUMeanAbsoluteError,
    HUPeakSignalToNoiseRatio,
    HUPSNRMetric,
    HUSSIMMetric,
    HUStructuralSimilarity,
)

FUNCTIONAL = {"mae": masked_mae, "psnr": lambda c, s, m: masked_psnr(c, s, m, (-1024, 3071)),
              "ssim": lambda c, s, m: masked_ssim(c, s, m, (-1024, 3071))}


def make_items(num=5, shape=(16, 16), seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(num):
        label = rng.uniform(-1, 0.8, size=(1, *shape)).astype(np.float32)
        pred = np.clip(label + rng.normal(0, 0.05, size=label.shape), -1.2, 1.2).astype(np.float32)
        mask = (rng.uniform(size=label.shape) > 0.3).astype(np.float32)
        items.append({"image": torch.from_numpy(pred), "label": torch.from_numpy(label),
                      "mask": torch.from_numpy(mask)})
    return items


def to_hu(x):
    """[-1, 1] -> [-1024, 3071] HU, written out (no clipping)."""
    return -1024.0 + (np.asarray(x, dtype=np.float64) + 1.0) * 4095.0 / 2.0


def expected(items, name):
    values = [FUNCTIONAL[name](to_hu(d["label"][0].numpy()), to_hu(d["image"][0].numpy()), d["mask"][0].numpy())
              for d in items]
    return float(np.mean(values))


def test_overshoot_beyond_the_window_is_scored_not_clipped():
    y = torch.ones(1, 1, 8, 8)
    metric = HUMAEMetric()
    metric(y * 1.2, y)  # 0.2 above the window's top: 0.2 * 4095 / 2 HU
    assert metric.aggregate().item() == pytest.approx(409.5, rel=1e-6)


@pytest.mark.parametrize("decollate", [True, False])
def test_handlers_in_supervised_evaluator_match_functional(decollate):
    items = make_items()
    transform = from_engine(["pred", "label"])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=DataLoader(items, batch_size=2), network=torch.nn.Identity(),
        decollate=decollate,
        key_val_metric={"mae": HUMeanAbsoluteError(output_transform=transform, mask_key="mask")},
        additional_metrics={"psnr": HUPeakSignalToNoiseRatio(output_transform=transform, mask_key="mask"),
                            "ssim": HUStructuralSimilarity(output_transform=transform, mask_key="mask")},
    )
    evaluator.run()
    for name in ("mae", "psnr", "ssim"):
        assert evaluator.state.metrics[name] == pytest.approx(expected(items, name), rel=1e-5), name
        assert evaluator.state.metric_details[name].shape == (5, 1)
    assert HUMeanAbsoluteError.label == NON_SYNTHRAD


def test_metric_without_mask_on_3d_batch_and_list_input():
    rng = np.random.default_rng(1)
    y = torch.from_numpy(rng.uniform(-1, 1, size=(2, 1, 8, 9, 10)).astype(np.float32))
    y_pred = y + 0.01
    metric = HUMAEMetric()
    metric(y_pred, y)
    metric(list(y_pred), list(y))  # decollated channel-first items
    assert metric.aggregate().item() == pytest.approx(0.01 * 4095 / 2, rel=1e-4)
    assert metric.get_buffer().shape == (4, 1)


def test_empty_mask_items_are_skipped_in_mean():
    y = torch.zeros(2, 1, 8, 8)
    mask = torch.ones(2, 1, 8, 8)
    mask[1] = 0
    metric = HUPSNRMetric(get_not_nans=True)
    metric(y + 0.1, y, mask=mask)
    value, not_nans = metric.aggregate()
    assert not_nans.item() == 1 and value.item() == pytest.approx(20 * np.log10(4095 / (0.1 * 4095 / 2)), rel=1e-4)


@pytest.mark.parametrize("shapes", [((2, 1, 8, 8), (2, 1, 8, 9)), ((2, 2, 8, 8), (2, 2, 8, 8)), ((2, 8, 8), (2, 8, 8))])
def test_bad_shapes_raise_value_error(shapes):
    with pytest.raises(ValueError, match=r"\(B, 1, H, W"):
        HUSSIMMetric()(torch.zeros(shapes[0]), torch.zeros(shapes[1]))
