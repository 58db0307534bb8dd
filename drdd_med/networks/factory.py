"""Build DRDD's networks (and the baselines') as MONAI ``DiffusionModelUNet`` from named presets.

Presets (per network: ``channels``, ``attention_levels``, ``num_res_blocks``, ``norm_num_groups``,
``num_head_channels``):

- ``tiny``: 2 levels (16, 32), one res block, no attention; unit tests, trains in seconds on CPU at 32².
- ``lean``: 4 levels (16, 32, 64, 64), no attention at the levels; the bundle's default, sized for CPUs. MONAI's
  ``DiffusionModelUNet`` always puts self-attention in its middle block; with a fourth level that block attends over
  (H/8)·(W/8) tokens (1024 for a 256² slice) instead of ``compact``'s 4096. Measured on 2 AVX512-BF16 cores, bf16,
  2 + 2 steps over a 256×256×150 volume through the whole translate pipeline: 33.5 s (``compact``: 132.1 s;
  ``benchmarks/results/inference.json``).
- ``compact``: the ``small`` layout at half the width (16, 32, 64); the middle block attends over (H/4)·(W/4) tokens.
- ``small``: 3 levels (32, 64, 128), attention at the lowest level; CPU demos.
- ``paper``: residual C=64 x (1, 2, 4, 8); denoiser C=128 x (1, 1, 2, 2, 4, 4) (paper Appendix B); attention only at
  the low-resolution levels (in 3D attention cost is quadratic in the voxel count of a level).

Every preset entry can be overridden: a plain key (``channels=(8, 16)``) applies to every network built, a
prefixed key (``residual_channels=...``, ``noise_num_res_blocks=...``, ``coupled_channels=...``) to one network.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from monai.networks.nets import DiffusionModelUNet
from torch import nn

from drdd_med.networks.coupled_net import CoupledNet, EntangledNet
from drdd_med.networks.drdd_net import DRDDNet
from drdd_med.networks.regression import RegressionNet

__all__ = ["PRESETS", "UNET_KEYS", "build_unet", "build_drdd_net", "build_coupled_net", "build_regression_net"]

logger = logging.getLogger(__name__)

_F, _T = False, True


def _unet(channels: tuple, attention: tuple, res_blocks: int, groups: int, heads: int) -> dict[str, Any]:
    return dict(channels=channels, attention_levels=attention, num_res_blocks=res_blocks, norm_num_groups=groups,
                num_head_channels=heads)


def _roles(residual: dict[str, Any], coupled: dict[str, Any], noise: dict[str, Any] | None = None) -> dict:
    """One preset's networks; the noise net has the residual net's layout unless ``noise`` is given."""
    return {"residual": residual, "noise": dict(noise or residual), "coupled": coupled}


#: Network sizes per preset and role, as ``_unet(channels, attention_levels, num_res_blocks, norm_num_groups,
#: num_head_channels)``. ``coupled`` (one net predicting residual and noise) is wider than the DRDD residual net so
#: that its parameter count is close to residual + noise nets together (METHOD.md §8).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": _roles(_unet((16, 32), (_F, _F), 1, 8, 8), coupled=_unet((16, 48), (_F, _F), 1, 8, 8)),
    "lean": _roles(_unet((16, 32, 64, 64), (_F, _F, _F, _F), 1, 8, 32),
                   coupled=_unet((24, 48, 96, 96), (_F, _F, _F, _F), 1, 8, 32)),
    "compact": _roles(_unet((16, 32, 64), (_F, _F, _T), 1, 8, 16),
                      coupled=_unet((24, 48, 96), (_F, _F, _T), 1, 8, 16)),
    "small": _roles(_unet((32, 64, 128), (_F, _F, _T), 1, 16, 32),
                    coupled=_unet((48, 96, 176), (_F, _F, _T), 1, 16, 16)),
    "paper": _roles(_unet((64, 128, 256, 512), (_F, _F, _F, _T), 2, 32, 64),
                    noise=_unet((128, 128, 256, 256, 512, 512), (_F, _F, _F, _T, _T, _T), 2, 32, 64),
                    coupled=_unet((128, 320, 512, 832), (_F, _F, _F, _T), 2, 32, 64)),
}
#: DiffusionModelUNet arguments that presets and overrides may set.
_ROLES = ("residual", "noise", "coupled")
UNET_KEYS = ("channels", "attention_levels", "num_res_blocks", "norm_num_groups", "num_head_channels",
             "use_flash_attention", "resblock_updown", "include_fc", "num_class_embeds")


def build_unet(spatial_dims: int, in_channels: int, out_channels: int, **config: Any) -> DiffusionModelUNet:
    """A MONAI ``DiffusionModelUNet`` with SDPA ("flash") attention unless ``use_flash_attention=False``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        config: ``UNET_KEYS`` entries.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    unknown = sorted(set(config) - set(UNET_KEYS))
    if unknown:
        raise ValueError(f"unknown network option(s) {unknown}; valid options: {list(UNET_KEYS)}.")
    config = dict(config)
    config.setdefault("use_flash_attention", True)
    channels = tuple(config["channels"])
    groups = config.get("norm_num_groups", 32)
    if any(c % groups for c in channels):
        raise ValueError(f"every entry of channels {channels} must be divisible by norm_num_groups={groups}.")
    heads = config.get("num_head_channels", 8)
    heads = [heads] * len(channels) if isinstance(heads, int) else list(heads)
    attention = config.get("attention_levels", [False] * len(channels))
    bad = [c for c, h, a in zip(channels, heads, attention) if a and c % h]
    if bad:
        raise ValueError(f"channels {bad} at attention levels must be divisible by num_head_channels={heads}.")
    return DiffusionModelUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **config)


def _role_config(preset: str, role: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    config = copy.deepcopy(PRESETS[preset][role])
    for key, value in overrides.items():
        prefix, _, rest = key.partition("_")
        if key in UNET_KEYS:
            config[key] = value
        elif prefix in _ROLES and rest in UNET_KEYS:
            if prefix == role:
                config[rest] = value
        else:
            raise ValueError(
                f"unknown override {key!r}; valid keys: {list(UNET_KEYS)}, optionally prefixed by one of "
                f"{[r + '_' for r in _ROLES]} to apply to one network only."
            )
    return config


def _check_channels(source_channels: int, target_channels: int) -> None:
    if source_channels < 1 or target_channels < 1:
        raise ValueError(f"channel counts must be >= 1, got source={source_channels}, target={target_channels}.")


def build_drdd_net(
    spatial_dims: int,
    source_channels: int,
    target_channels: int,
    preset: str = "small",
    noise_conditioned: bool = False,
    noise_level: float = 1.0,
    residual_prediction: str = "residual",
    **overrides: Any,
) -> DRDDNet:
    """Build a :class:`DRDDNet` of two ``DiffusionModelUNet`` networks.

    Args:
        spatial_dims: 2 or 3.
        source_channels: Cs (e.g. 1 for MR, k for a 2.5D stack of k slices).
        target_channels: Ct (e.g. 1 for CT).
        preset: a key of :data:`PRESETS` (``"tiny"``, ``"lean"``, ``"compact"``, ``"small"``, ``"paper"``).
        noise_conditioned: the noise net also receives the source (reference-code variant).
        noise_level: stored in the checkpoint; must match the scheduler's at sampling time.
        residual_prediction: what the residual net outputs, ``"residual"`` or ``"sample"`` (see :class:`DRDDNet`).
        overrides: network options, plain (both nets) or prefixed ``residual_`` / ``noise_``.

    Returns:
        The DRDDNet; ``net.divisor`` is the required spatial divisibility.

    Example:
        >>> net = build_drdd_net(2, 1, 1, preset="tiny")
        >>> net.divisor
        2
    """
    _check_channels(source_channels, target_channels)
    residual_net = build_unet(spatial_dims, target_channels + source_channels, target_channels,
                              **_role_config(preset, "residual", overrides))
    noise_in = target_channels + (source_channels if noise_conditioned else 0)
    noise_net = build_unet(spatial_dims, noise_in, target_channels, **_role_config(preset, "noise", overrides))
    net = DRDDNet(residual_net, noise_net, noise_conditioned=noise_conditioned, noise_level=noise_level,
                  source_channels=source_channels, target_channels=target_channels,
                  residual_prediction=residual_prediction)
    logger.debug("built DRDDNet preset=%s spatial_dims=%d divisor=%d", preset, spatial_dims, net.divisor)
    return net


def build_coupled_net(
    spatial_dims: int, source_channels: int, target_channels: int, preset: str = "small", entangled: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build the coupled RDDM baseline network(s); arguments as for :func:`build_drdd_net`, plus:

    Args:
        entangled: False -> :class:`CoupledNet`, one (wider) U-Net with 2*Ct outputs; True -> :class:`EntangledNet`,
            DRDD's two architectures, both source-conditioned, trained on the coupled path.
        overrides: network options, plain or prefixed ``coupled_``, ``residual_``, ``noise_``.
    """
    _check_channels(source_channels, target_channels)
    in_ch = target_channels + source_channels
    if entangled:
        residual_net = build_unet(spatial_dims, in_ch, target_channels, **_role_config(preset, "residual", overrides))
        noise_net = build_unet(spatial_dims, in_ch, target_channels, **_role_config(preset, "noise", overrides))
        return EntangledNet(residual_net, noise_net, target_channels=target_channels)
    net = build_unet(spatial_dims, in_ch, 2 * target_channels, **_role_config(preset, "coupled", overrides))
    return CoupledNet(net, target_channels=target_channels)


def build_regression_net(
    spatial_dims: int, source_channels: int, target_channels: int, preset: str = "small", **overrides: Any
) -> RegressionNet:
    """Build the direct-regression baseline: the residual net's architecture, source in, target out, one call.

    Arguments as for :func:`build_drdd_net`; ``overrides`` are plain or ``residual_``-prefixed.
    """
    _check_channels(source_channels, target_channels)
    config = _role_config(preset, "residual", overrides)
    return RegressionNet(build_unet(spatial_dims, source_channels, target_channels, **config))
