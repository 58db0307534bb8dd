"""VolumeRegressionInferer: one RegressionNet evaluation over a whole volume, through VolumeDRDDInferer's machinery."""

from __future__ import annotations

import pytest
import torch

from drdd_med.inferers.volume import VolumeRegressionInferer, slice_stack
from drdd_med.networks.factory import build_regression_net


pytestmark = pytest.mark.usefixtures("single_thread")


def regression_net(spatial_dims: int = 2, source_channels: int = 1, seed: int = 0):
    """A tiny RegressionNet with perturbed weights (a fresh one predicts 0 everywhere: its last conv is zeroed)."""
    torch.manual_seed(seed)
    net = build_regression_net(spatial_dims, source_channels, 1, "tiny")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


@pytest.fixture
def volume():
    return torch.rand(1, 1, 16, 12, 5, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("mode,num_slices", [("2d", 1), ("2.5d", 3)])
def test_slices_are_one_direct_network_call_each(volume, mode, num_slices):
    net = regression_net(source_channels=num_slices)
    calls = []
    inferer = VolumeRegressionInferer(mode=mode, num_slices=num_slices, slice_batch=2, precision="fp32",
                                      progress=lambda done, total: calls.append((done, total)))
    out = inferer(volume, net)
    with torch.no_grad():
        expected = net(slice_stack(volume, num_slices)).permute(1, 2, 3, 0)[None].clamp(-1, 1)
    assert out.shape == volume.shape and out.dtype == torch.float32
    assert expected.std() > 0.01  # a non-trivial prediction
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert calls == [(1, 1)]  # one whole-volume network evaluation


def test_slice_batch_and_memory_layout_do_not_change_the_result(volume):
    net = regression_net()
    reference = VolumeRegressionInferer(slice_batch=5, channels_last=False)(volume, net)
    for options in ({"slice_batch": 1}, {"slice_batch": 3, "channels_last": True}, {}):
        torch.testing.assert_close(VolumeRegressionInferer(**options)(volume, net), reference, atol=1e-5, rtol=1e-5)


def test_3d_window_over_the_whole_volume_is_the_direct_call():
    net = regression_net(spatial_dims=3)
    source = torch.rand(1, 1, 8, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    out = VolumeRegressionInferer(mode="3d", roi_size=(8, 8, 8))(source, net)
    with torch.no_grad():
        expected = net(source).clamp(-1, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    windows = VolumeRegressionInferer(mode="3d", roi_size=(4, 4, 4), overlap=0.5)(source, net)
    assert windows.shape == source.shape and torch.isfinite(windows).all()


def test_odd_sizes_are_padded_for_the_network_and_cropped_back():
    source = torch.rand(1, 1, 15, 11, 3) * 2 - 1
    assert VolumeRegressionInferer()(source, regression_net()).shape == source.shape


def test_bf16_autocast_returns_float32_close_to_fp32(volume):
    net = regression_net()
    fp32 = VolumeRegressionInferer(precision="fp32")(volume, net)
    bf16 = VolumeRegressionInferer(precision="bf16")(volume, net)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # autocast ran
    assert (bf16 - fp32).abs().max() < 0.05


def test_output_is_clamped_to_the_unit_range(volume):
    net = regression_net()
    with torch.no_grad():
        net.net.out[-1].conv.bias.fill_(5.0)  # push every prediction far above 1
    assert VolumeRegressionInferer()(volume, net).max() == 1.0
    assert VolumeRegressionInferer(clip=False)(volume, net).max() > 1.0


def test_samples_and_sampling_options_are_refused(volume):
    with pytest.raises(ValueError, match="deterministic"):
        VolumeRegressionInferer(num_samples=3)
    for option in ({"residual_steps": 2}, {"noise_steps": 1}, {"eta": 0.5}, {"noise_correlation": 0.5}):
        with pytest.raises(ValueError, match="no sampling steps"):
            VolumeRegressionInferer(**option)
    with pytest.raises(ValueError, match="no sampling arguments"):
        VolumeRegressionInferer()(volume, regression_net(), num_samples=2)
    inferer = VolumeRegressionInferer(seed=7)  # accepted: a deterministic model ignores it
    assert (inferer.residual_steps, inferer.noise_steps, inferer.num_samples) == (0, 0, 1)


def test_source_channels_must_match_the_network(volume):
    with pytest.raises(ValueError, match="source channels"):
        VolumeRegressionInferer(mode="2.5d", num_slices=3)(volume, regression_net(source_channels=1))
