"""DRDD networks: the two-network DRDDNet, the MONAI DiffusionModelUNet factory, baselines."""

from __future__ import annotations

from drdd_med.networks.coupled_net import CoupledNet, EntangledNet
from drdd_med.networks.drdd_net import DRDDNet, network_divisor, unwrap
from drdd_med.networks.factory import PRESETS, build_coupled_net, build_drdd_net, build_regression_net, build_unet
from drdd_med.networks.regression import RegressionNet

__all__ = [
    "DRDDNet",
    "CoupledNet",
    "EntangledNet",
    "RegressionNet",
    "PRESETS",
    "build_unet",
    "build_drdd_net",
    "build_coupled_net",
    "build_regression_net",
    "network_divisor",
    "unwrap",
]
