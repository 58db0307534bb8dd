"""Tests for drdd_med.metrics.functional against hand-computed values and independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from drdd_med.metrics.functional import (
    MS_SSIM_WEIGHTS,
    masked_ms_ssim,
    masked_ssim,
    synthrad2023_metrics,
    synthrad2025_metrics,
    through_plane_consistency,
    through_plane_difference,
    tissue_mae,
)

PSNR_2025_100HU = 20 * np.log10(4095 / 100)  # 32.245 dB
PSNR_2023_100HU = 20 * np.log10(4024 / 100)  # 32.093 dB


def phantom(shape=(16, 16, 16), seed=0):
    """CT in [-900, 1900] HU (no clipping for +100 HU errors) and a box body mask."""
    rng = np.random.default_rng(seed)
    ct = rng.uniform(-900.0, 1900.0, size=shape)
    mask = np.zeros(shape, dtype=np.uint8)
    mask[tuple(slice(2, n - 2) for n in shape)] = 1
    return ct, mask


def window_ssim_reference(x, y, mask, data_range, win=7):
    """SSIM by direct windowed sums over full windows only (no filtering, no skimage), averaged over the mask."""
    n = win ** x.ndim
    wx, wy = sliding_window_view(x, (win,) * x.ndim), sliding_window_view(y, (win,) * x.ndim)
    axes = tuple(range(x.ndim, 2 * x.ndim))
    mx, my = wx.mean(axis=axes), wy.mean(axis=axes)
    expand = (...,) + (None,) * x.ndim
    vx = ((wx - mx[expand]) ** 2).sum(axis=axes) / (n - 1)
    vy = ((wy - my[expand]) ** 2).sum(axis=axes) / (n - 1)
    cxy = ((wx - mx[expand]) * (wy - my[expand])).sum(axis=axes) / (n - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    inner = mask[tuple(slice(3, s - 3) for s in mask.shape)] > 0
    return ssim[inner].mean()


def ms_ssim_reference(x, y, mask, lo=-1024.0, hi=3071.0):
    """SynthRAD2025 masked MS-SSIM for 2D inputs, written out step by step with explicit windows."""
    x = np.where(mask > 0, np.clip(x, lo, hi), lo) - lo
    y = np.where(mask > 0, np.clip(y, lo, hi), lo) - lo
    pads = [((97 - n) // 2, 97 - n - (97 - n) // 2) if n < 97 else (0, 0) for n in x.shape]
    x, y, m = np.pad(x, pads, mode="edge"), np.pad(y, pads, mode="edge"), np.pad(mask, pads, mode="edge") > 0
    c1, c2 = (0.01 * (hi - lo)) ** 2, (0.03 * (hi - lo)) ** 2
    result = 1.0
    for level, w in enumerate(MS_SSIM_WEIGHTS):
        wx, wy = sliding_window_view(x, (7, 7)), sliding_window_view(y, (7, 7))
        mx, my = wx.mean(axis=(2, 3)), wy.mean(axis=(2, 3))
        vx = np.clip(((wx - mx[..., None, None]) ** 2).sum(axis=(2, 3)) / 48, 0, None)
        vy = np.clip(((wy - my[..., None, None]) ** 2).sum(axis=(2, 3)) / 48, 0, None)
        cxy = ((wx - mx[..., None, None]) * (wy - my[..., None, None])).sum(axis=(2, 3)) / 48
        sx, sy = np.sqrt(vx), np.sqrt(vy)
        lum = np.clip((2 * mx * my + c1) / (mx**2 + my**2 + c1), 0, None)
        con = np.clip((2 * sx * sy + c2) / (vx + vy + c2), 0, None)
        st = np.clip((cxy + c2 / 2) / (sx * sy + c2 / 2), 0, None)
        value = (lum**w * con**w * st**w)[m[3:-3, 3:-3]].mean()
        result *= min(max(value, 0.0), 1.0)
        # 2x2 box average of (i-1, i) neighbours with a zero before the first voxel, then every 2nd voxel
        xp, yp = np.pad(x, ((1, 0), (1, 0))), np.pad(y, ((1, 0), (1, 0)))
        x = ((xp[:-1, :-1] + xp[1:, :-1] + xp[:-1, 1:] + xp[1:, 1:]) / 4)[::2, ::2]
        y = ((yp[:-1, :-1] + yp[1:, :-1] + yp[:-1, 1:] + yp[1:, 1:]) / 4)[::2, ::2]
        m = m[::2, ::2]
    return result


def test_identical_volumes_are_perfect():
    ct, mask = phantom()
    m23, m25 = synthrad2023_metrics(ct, ct, mask), synthrad2025_metrics(ct, ct, mask)
    assert m23["mae"] == 0 and m25["mae"] == 0 and np.isinf(m23["psnr"]) and np.isinf(m25["psnr"])
    assert m23["ssim"] == pytest.approx(1.0, abs=1e-12) and m25["ms_ssim"] == pytest.approx(1.0, abs=1e-9)


def test_constant_100_hu_error_matches_hand_values():
    ct, mask = phantom()
    m23, m25 = synthrad2023_metrics(ct, ct + 100.0, mask), synthrad2025_metrics(ct, ct + 100.0, mask)
    assert m23["mae"] == pytest.approx(100.0, abs=1e-9) and m25["mae"] == pytest.approx(100.0, abs=1e-9)
    assert m25["psnr"] == pytest.approx(PSNR_2025_100HU, abs=1e-9) and round(m25["psnr"], 3) == 32.245
    assert m23["psnr"] == pytest.approx(PSNR_2023_100HU, abs=1e-9) and round(m23["psnr"], 3) == 32.093
    assert 0.9 < m23["ssim"] < 1 and 0.9 < m25["ms_ssim"] < 1


def test_voxels_outside_mask_never_change_any_metric():
    ct, mask = phantom(seed=1)
    sct = ct + np.random.default_rng(2).normal(0, 80, ct.shape)
    rng = np.random.default_rng(3)
    ct2, sct2 = ct.copy(), sct.copy()
    outside = mask == 0
    ct2[outside] = rng.uniform(-3000, 5000, outside.sum())
    sct2[outside] = rng.uniform(-3000, 5000, outside.sum())
    assert synthrad2023_metrics(ct, sct, mask) == synthrad2023_metrics(ct2, sct2, mask)
    assert synthrad2025_metrics(ct, sct, mask) == synthrad2025_metrics(ct2, sct2, mask)
    assert tissue_mae(ct, sct, mask) == tissue_mae(ct2, sct2, mask)


def test_clipping_changes_psnr_and_ssim_but_not_mae():
    ct, mask = phantom((12, 12, 12), seed=4)
    ct[4:8, 4:8, 4:8] = 3500.0
    sct = ct.copy()
    sct[4:8, 4:8, 4:8] = 3300.0  # 200 HU error, entirely above both clipping ranges
    m23, m25 = synthrad2023_metrics(ct, sct, mask), synthrad2025_metrics(ct, sct, mask)
    expected_mae = 200.0 * 64 / mask.sum()
    assert m23["mae"] == pytest.approx(expected_mae) and m25["mae"] == pytest.approx(expected_mae)
    assert np.isinf(m23["psnr"]) and np.isinf(m25["psnr"])  # invisible after clipping
    assert m23["ssim"] == pytest.approx(1.0) and m25["ms_ssim"] == pytest.approx(1.0)
    sct[4:8, 4:8, 4:8] = 3050.0  # 450 HU raw error; 21 HU after 2025 clipping, 0 after 2023 clipping
    m25 = synthrad2025_metrics(ct, sct, mask)
    assert m25["mae"] == pytest.approx(450.0 * 64 / mask.sum())
    assert m25["psnr"] == pytest.approx(10 * np.log10(4095**2 / (21.0**2 * 64 / mask.sum())))
    assert m25["ms_ssim"] < 1


def test_masked_ssim_matches_independent_window_formula():
    rng = np.random.default_rng(5)
    ct = rng.uniform(-1200, 3300, (10, 11, 12))
    sct = ct + rng.normal(0, 300, ct.shape)
    mask = (rng.uniform(size=ct.shape) > 0.3).astype(float)
    lo, hi = -1024.0, 3000.0
    x = np.where(mask > 0, np.clip(ct, lo, hi), lo) - lo
    y = np.where(mask > 0, np.clip(sct, lo, hi), lo) - lo
    expected = window_ssim_reference(x, y, mask, hi - lo)
    assert masked_ssim(ct, sct, mask) == pytest.approx(expected, abs=1e-6)
    assert synthrad2023_metrics(ct, sct, mask)["ssim"] == pytest.approx(expected, abs=1e-6)


def test_masked_ms_ssim_matches_independent_implementation_2d():
    rng = np.random.default_rng(6)
    ct = rng.uniform(-1100, 3200, (40, 33))
    sct = ct + rng.normal(0, 250, ct.shape)
    mask = np.zeros(ct.shape)
    mask[5:35, 4:30] = 1
    assert masked_ms_ssim(ct, sct, mask) == pytest.approx(ms_ssim_reference(ct, sct, mask), abs=1e-6)


def test_tissue_mae_and_bias_hand_values():
    ct = np.array([[-1000.0, -400.0, 0.0, 300.0, 301.0, 1000.0]] * 2)
    sct = ct + np.array([[10.0, -20.0, 30.0, -40.0, 50.0, -60.0]] * 2)
    mask = np.ones_like(ct)
    mask[1] = 0
    result = tissue_mae(ct, sct, mask)
    assert result["mae_air"] == 10.0
    assert result["mae_soft_tissue"] == pytest.approx(30.0)  # -400, 0 and 300 HU are soft tissue
    assert result["mae_bone"] == pytest.approx(55.0)
    assert result["mean_error"] == pytest.approx(-30.0 / 6)
    assert result["fraction_soft_tissue"] == pytest.approx(0.5)
    assert np.isnan(tissue_mae(ct, sct, np.zeros_like(ct))["mae_bone"])


def test_through_plane_figures_on_slices_that_differ_by_known_constants():
    levels = np.array([0.0, 10.0, 30.0, 60.0, 100.0])  # adjacent slices differ by 10, 20, 30, 40 HU
    ct = np.broadcast_to(levels, (6, 4, 5)).copy()
    sct = ct + np.array([0.0, 50.0, 0.0, 50.0, 0.0])  # slices 60, 30, 80, 10 HU apart
    mask = np.ones(ct.shape)
    mask[:3, :, 4] = 0  # half of the last pair lies outside the body
    # pairs (0,1), (1,2), (2,3) over the whole slice area A, pair (3,4) over A / 2
    expected_ct, expected_sct = (10 + 20 + 30 + 40 / 2) / 3.5, (60 + 30 + 80 + 10 / 2) / 3.5
    result = through_plane_consistency(ct, sct, mask, axis=2)
    assert result["through_plane_ct"] == pytest.approx(expected_ct, rel=1e-12)
    assert result["through_plane_sct"] == pytest.approx(expected_sct, rel=1e-12)
    assert result["through_plane_ratio"] == pytest.approx(175 / 80, rel=1e-12)
    # the axis is the slice axis: the same volume with its slices along axis 0 gives the same figures
    moved = through_plane_consistency(np.moveaxis(ct, 2, 0), np.moveaxis(sct, 2, 0), np.moveaxis(mask, 2, 0), axis=0)
    assert moved == pytest.approx(result, rel=1e-12, nan_ok=True)
    # within a slice nothing changes: across axis 0 every difference is 0, and the ratio is undefined
    flat = through_plane_consistency(ct, sct, mask, axis=0)
    assert flat["through_plane_ct"] == 0 and np.isnan(flat["through_plane_ratio"])
    assert np.isnan(through_plane_difference(ct, np.zeros_like(mask), axis=2))


def test_stripe_ratio_separates_slice_offsets_from_blur():
    """Per-slice offsets raise the stripe ratio; a uniformly smoother image keeps it at 1."""
    x = np.arange(6.0)[:, None, None]
    z = np.arange(5.0)[None, None, :]
    ct = np.broadcast_to(4.0 * x + 10.0 * z, (6, 4, 5)).copy()  # in-plane steps 4 (axis 0), 0 (axis 1); z steps 10
    mask = np.ones(ct.shape)
    blurred = 0.5 * ct  # half the change in every direction
    flat = through_plane_consistency(ct, blurred, mask, axis=2)
    assert flat["through_plane_ratio"] == pytest.approx(0.5) and flat["stripe_ratio"] == pytest.approx(1.0)
    striped = ct + np.array([0.0, 20.0, 0.0, 20.0, 0.0])  # each slice its own offset: z steps 30, 10, 30, 10
    result = through_plane_consistency(ct, striped, mask, axis=2)
    # axis 1 has no change in the CT and is left out, so the in-plane ratio is that of axis 0: 1
    assert result["through_plane_ratio"] == pytest.approx(2.0)
    assert result["in_plane_ratio"] == pytest.approx(1.0) and result["stripe_ratio"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("ct", "sct", "mask", "match"),
    [
        (np.zeros((8, 8, 8)), np.zeros((8, 8, 7)), None, "same shape"),
        (np.zeros((8, 8, 8)), np.zeros((8, 8, 8)), np.ones((8, 8)), "mask shape"),
        (np.full((8, 8, 8), np.nan), np.zeros((8, 8, 8)), None, "NaN"),
        (np.zeros((5, 8, 8)), np.zeros((5, 8, 8)), None, "at least 7"),
    ],
)
def test_bad_inputs_raise_value_error(ct, sct, mask, match):
    with pytest.raises(ValueError, match=match):
        synthrad2023_metrics(ct, sct, mask)
