"""build_drdd_net / build_coupled_net / build_regression_net: presets, overrides, shapes, divisibility."""

from __future__ import annotations

import pytest
import torch

from drdd_med.networks.factory import PRESETS, build_coupled_net, build_drdd_net, build_regression_net, build_unet


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("spatial_dims, size", [(2, 16), (3, 8)])
@pytest.mark.parametrize("noise_conditioned", [False, True])
def test_tiny_net_shapes_channels_and_flash_attention(spatial_dims, size, noise_conditioned):
    net = build_drdd_net(
        spatial_dims, 3, 1, preset="tiny", noise_conditioned=noise_conditioned, attention_levels=(False, True)
    )
    assert net.residual_net.in_channels == 4 and net.residual_net.out_channels == 1
    assert net.noise_net.in_channels == (4 if noise_conditioned else 1)
    assert net.divisor == 2 and net.source_channels == 3 and net.target_channels == 1
    attn = [m for m in net.modules() if hasattr(m, "use_flash_attention")]
    assert attn and all(m.use_flash_attention for m in attn)
    x = torch.randn(2, 1, *([size] * spatial_dims))
    source = torch.randn(2, 3, *([size] * spatial_dims))
    t = torch.tensor([3.5, 999.0])
    assert net(x, source, t, stage="residual").shape == x.shape
    assert net(x, source, t, stage="noise").shape == x.shape


def test_paper_preset_matches_the_paper_architecture():
    with torch.device("meta"):
        net = build_drdd_net(2, 1, 1, preset="paper")
    assert tuple(net.residual_net.block_out_channels) == (64, 128, 256, 512)
    assert tuple(net.noise_net.block_out_channels) == (128, 128, 256, 256, 512, 512)
    assert net.divisor == 32  # the denoiser has 6 levels
    assert not any(PRESETS["paper"]["noise"]["attention_levels"][:3])  # attention only at low resolution


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_coupled_baseline_is_parameter_matched_within_10_percent(preset):
    with torch.device("meta"):
        drdd = build_drdd_net(2, 1, 1, preset=preset)
        coupled = build_coupled_net(2, 1, 1, preset=preset)
        entangled = build_coupled_net(2, 1, 1, preset=preset, entangled=True)
    assert abs(_params(coupled) / _params(drdd) - 1) < 0.1
    assert abs(_params(entangled) / _params(drdd) - 1) < 0.01
    assert coupled.net.out_channels == 2


def test_overrides_apply_to_both_or_one_network():
    net = build_drdd_net(2, 1, 1, preset="tiny", channels=(8, 16), noise_num_res_blocks=2)
    assert tuple(net.residual_net.block_out_channels) == (8, 16) == tuple(net.noise_net.block_out_channels)
    assert list(net.residual_net.num_res_blocks) == [1, 1] and list(net.noise_net.num_res_blocks) == [2, 2]
    net = build_drdd_net(2, 1, 1, preset="tiny", residual_channels=(8, 16, 32), residual_attention_levels=(0, 0, 0))
    assert net.divisor == 4


@pytest.mark.parametrize("kwargs, match", [
    ({"preset": "huge"}, "unknown preset"),
    ({"bogus": 1}, "unknown override"),
    ({"channels": (12, 32)}, "norm_num_groups"),
    ({"attention_levels": (True, True), "num_head_channels": 12}, "num_head_channels"),
])
def test_bad_configuration_raises_with_the_valid_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_drdd_net(2, 1, 1, **{"preset": "tiny", **kwargs})


def test_bad_spatial_dims_and_channels_raise():
    with pytest.raises(ValueError, match="spatial_dims"):
        build_unet(1, 1, 1, **PRESETS["tiny"]["residual"])
    with pytest.raises(ValueError, match="channel counts"):
        build_drdd_net(2, 0, 1, preset="tiny")


def test_regression_net_is_one_call_source_to_target():
    net = build_regression_net(2, 3, 1, preset="tiny")
    assert net.net.in_channels == 3 and net.divisor == 2
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 1, 8, 8)
