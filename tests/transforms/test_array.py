"""Intensity maps to [-1, 1] and their explicit inverses; 2.5D reshapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from drdd_med.keys import HU_MAX, HU_MIN
from drdd_med.transforms.array import (
    UNIT_WINDOW_KEY, MiddleSlice, PercentileToUnit, SlicesToChannels, UnitToWindow, WindowToUnit, unit_to_window,
    window_to_unit,
)
from drdd_med.transforms.dictionary import NormalizeToUnitd, UnitToWindowd


@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "torch"])
def test_hu_window_round_trip_and_endpoints(as_tensor):
    hu = np.arange(HU_MIN, HU_MAX + 1, 7.0, dtype=np.float32)
    x = torch.as_tensor(hu) if as_tensor else hu
    unit = WindowToUnit()(x)
    assert type(unit) is type(x)
    assert float(unit.min()) == -1.0 and abs(float(window_to_unit(np.float32(HU_MAX))) - 1.0) < 1e-7
    back = WindowToUnit().inverse_intensity(unit)
    np.testing.assert_allclose(np.asarray(back), hu, atol=2e-3)
    np.testing.assert_array_equal(np.rint(np.asarray(back)), hu)  # integer HU survive exactly after rounding


def test_window_clips_outside_values_and_inverse_clips_overshoot():
    assert float(window_to_unit(np.float32(-3000))) == -1.0 and float(window_to_unit(np.float32(5000))) == 1.0
    assert float(unit_to_window(np.float32(1.3))) == HU_MAX
    assert float(unit_to_window(np.float32(0.0), -1000, 1000)) == 0.0
    with pytest.raises(ValueError, match="a_max > a_min"):
        WindowToUnit(100, 100)


def test_percentile_scaling_records_window_and_inverts():
    rng = np.random.default_rng(0)
    mr = MetaTensor(torch.as_tensor(rng.gamma(2.0, 300.0, size=(1, 16, 16, 8)).astype(np.float32)))
    unit = PercentileToUnit(0.5, 99.5)(mr)
    a_min, a_max = np.percentile(mr.numpy(), [0.5, 99.5])
    np.testing.assert_allclose(unit.meta[UNIT_WINDOW_KEY], [a_min, a_max], rtol=1e-6)
    assert float(unit.min()) == -1.0 and float(unit.max()) == 1.0
    inside = (mr.numpy() >= a_min) & (mr.numpy() <= a_max)
    back = UnitToWindow(None, None)(unit)
    np.testing.assert_allclose(back.numpy()[inside], mr.numpy()[inside], rtol=1e-4, atol=1e-2)
    with pytest.raises(ValueError, match="no a_min/a_max"):
        UnitToWindow(None, None)(torch.zeros(3))


def test_normalize_dict_from_spec_settings_and_inverse_dict():
    ct = np.array([[-1024.0, 0.0, 1023.5, 3071.0]], np.float32)
    d = NormalizeToUnitd("ct", {"type": "range", "a_min": -1024, "a_max": 3071})({"ct": ct})
    np.testing.assert_allclose(d["ct"], [[-1.0, 2 * 1024 / 4095 - 1, 0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(UnitToWindowd("ct")(d)["ct"], ct, atol=1e-3)
    with pytest.raises(ValueError, match="expected 'range' or 'percentile'"):
        NormalizeToUnitd("ct", {"type": "histogram_equalisation"})


def test_slices_to_channels_and_middle_slice():
    slab = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)
    stacked = SlicesToChannels()(slab)
    assert stacked.shape == (5, 2, 3)
    for j in range(5):
        assert torch.equal(stacked[j], slab[0, :, :, j])
    assert torch.equal(MiddleSlice()(slab), slab[..., 2])
    with pytest.raises(ValueError, match=r"\(1, H, W, k\)"):
        SlicesToChannels()(torch.zeros(2, 2, 3, 5))
