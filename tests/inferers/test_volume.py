"""Whole-volume DRDD sampling: slice / 2.5D / sliding-window inferers against the whole-volume sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import oracle_drdd_net, sample_exact_path

from drdd_med import DRDDInferer, DRDDScheduler, build_drdd_net
from drdd_med.inferers.volume import VolumeDRDDInferer, slice_stack


def _target_fn(stack: torch.Tensor) -> torch.Tensor:
    """A pointwise, nonlinear 'MR -> CT' map of the middle slice plus the through-plane difference of its neighbours
    (a 1-channel source has no neighbours), so oracles give the same answer on any window or slice."""
    mid = stack.shape[1] // 2
    out = torch.tanh(2.0 * stack[:, mid:mid + 1]) * 0.8 - 0.1
    return out + 0.1 * (stack[:, -1:] - stack[:, :1]) if stack.shape[1] > 1 else out


def _expected_target(volume: torch.Tensor, num_slices: int) -> torch.Tensor:
    """:func:`_target_fn` on the volume in numpy, neighbours along Z with the edge slices repeated."""
    v = volume.numpy()
    out = np.tanh(2.0 * v) * 0.8 - 0.1
    if num_slices > 1:
        padded = np.pad(v, [(0, 0)] * 4 + [(1, 1)], mode="edge")
        out = out + 0.1 * (padded[..., 2:] - padded[..., :-2])
    return torch.from_numpy(out)


@pytest.fixture()
def volume() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand((1, 1, 20, 18, 12), generator=g) * 2 - 1


@pytest.mark.parametrize("mode,num_slices", [("2d", 1), ("2.5d", 3), ("3d", 1)])
@pytest.mark.parametrize("steps", [(2, 2), (5, 3)])
def test_oracle_volume_sampling_follows_the_exact_path(volume, mode, num_slices, steps):
    net = oracle_drdd_net(1, target_fn=_target_fn)
    inferer = VolumeDRDDInferer(
        DRDDScheduler(), residual_steps=steps[0], noise_steps=steps[1], mode=mode, num_slices=num_slices,
        slice_batch=5, roi_size=(8, 8, 8), overlap=0.5,
    )
    x0 = _expected_target(volume, num_slices)
    out = sample_exact_path(inferer, net, volume, x0, volume, steps)
    assert out.shape == volume.shape
    assert torch.allclose(out, x0.clamp(-1, 1), atol=1e-5)


def test_sliding_window_equals_whole_volume_with_oracle(volume):
    net = oracle_drdd_net(1, target_fn=_target_fn)
    scheduler = DRDDScheduler()
    windowed = VolumeDRDDInferer(scheduler, mode="3d", roi_size=(8, 8, 8), overlap=0.25, seed=3, eta=0.5)
    whole = DRDDInferer(scheduler, eta=0.5)
    a = windowed(volume, net)
    b = whole.sample(volume, net, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, atol=1e-5)


def test_sliding_window_has_no_seams_with_a_real_network():
    """A tiny untrained 3D net: the windowed result differs from the whole-volume one only by blending, not seams.

    Seams would show as jumps across window borders much larger than the jumps inside a window.
    """
    torch.manual_seed(0)
    net = build_drdd_net(3, 1, 1, preset="tiny")
    src = torch.linspace(-1, 1, 16)[:, None, None].expand(16, 16, 16)[None, None].contiguous()
    scheduler = DRDDScheduler()
    windowed = VolumeDRDDInferer(scheduler, mode="3d", roi_size=(8, 16, 16), overlap=0.5, seed=1)(src, net)
    whole = DRDDInferer(scheduler).sample(src, net, generator=torch.Generator().manual_seed(1))
    diff = (windowed - whole).abs()
    # neighbouring-slice differences along the windowed axis: border (7->8) vs interior
    steps = (windowed[..., 1:, :, :] - windowed[..., :-1, :, :]).abs().mean(dim=(0, 1, 3, 4))
    border = steps[7].item()
    interior = torch.cat([steps[:7], steps[8:]]).median().item()
    assert border < 3.0 * interior + 1e-3, (border, interior)
    assert diff.mean().item() < 0.25


def test_volume_sampling_is_seeded_and_ensembles(volume):
    torch.manual_seed(0)
    net = build_drdd_net(2, 1, 1, preset="tiny")
    inferer = VolumeDRDDInferer(DRDDScheduler(), mode="2d", seed=7, slice_batch=4)
    vol = volume[..., :16, :16, :]
    assert torch.equal(inferer(vol, net), inferer(vol, net))
    assert not torch.equal(inferer(vol, net), VolumeDRDDInferer(DRDDScheduler(), mode="2d", seed=8)(vol, net))
    ensemble = VolumeDRDDInferer(DRDDScheduler(), mode="2d", seed=7, eta=1.0, num_samples=3)
    mean, std = ensemble(vol, net)
    gen = torch.Generator().manual_seed(7)  # the seed's draws, one sample per call
    singles = np.stack([ensemble(vol, net, generator=gen, num_samples=1).numpy() for _ in range(3)])
    assert (singles.std(axis=0) > 0).mean() > 0.5  # the samples differ: the std map is not trivially 0
    np.testing.assert_allclose(mean.numpy(), singles.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(std.numpy(), singles.std(axis=0, ddof=1), atol=1e-6)


def test_slice_stack_middle_group_is_the_slice(volume):
    stack = slice_stack(volume, 3)
    assert stack.shape == (12, 3, 20, 18)
    assert torch.equal(stack[:, 1], volume[0, 0].permute(2, 0, 1))
    assert torch.equal(stack[0, 0], volume[0, 0, :, :, 0])  # edge replicated
    assert torch.equal(stack[5, 2], volume[0, 0, :, :, 6])


def test_volume_inferer_rejects_bad_input(volume):
    net = build_drdd_net(2, 1, 1, preset="tiny")
    with pytest.raises(ValueError, match="one volume"):
        VolumeDRDDInferer(DRDDScheduler())(volume[0], net)
    bad = volume.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN|finite"):
        VolumeDRDDInferer(DRDDScheduler())(bad, net)
    with pytest.raises(ValueError, match="source channels"):
        VolumeDRDDInferer(DRDDScheduler(), mode="2.5d", num_slices=3)(volume, net)
    with pytest.raises(ValueError, match="mode"):
        VolumeDRDDInferer(DRDDScheduler(), mode="4d")
