"""CoupledInferer / RegressionInferer: oracle exactness and the MONAI call convention."""

from __future__ import annotations

import pytest
import torch

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.inferers.baselines import CoupledInferer, RegressionInferer
from drdd_med.networks.factory import build_coupled_net, build_regression_net
from drdd_med.networks.oracle import OracleCoupledNet


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (1, 1, 4, 4, 4)])
@pytest.mark.parametrize("steps", [2, 4, 10])
def test_coupled_inferer_oracle_returns_x0(shape, steps):
    g = torch.Generator().manual_seed(0)
    x0, source = torch.rand(shape, generator=g) * 2 - 1, torch.rand(shape, generator=g) * 2 - 1
    sched = CoupledScheduler()
    out = CoupledInferer(sched, num_steps=steps)(source, OracleCoupledNet(sched, 1, target=x0), generator=g)
    assert (out - x0).abs().max() <= 1e-5


def test_coupled_inferer_is_reproducible_and_gives_std():
    torch.manual_seed(0)
    net = build_coupled_net(2, 1, 1, preset="tiny", entangled=True)
    inferer = CoupledInferer(CoupledScheduler(), eta=1.0)
    source = torch.rand(1, 1, 8, 8)
    a = inferer(source, net, generator=torch.Generator().manual_seed(3))
    b = inferer(source, net, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (1, 1, 8, 8)
    mean, std = inferer(source, net, num_samples=2, generator=torch.Generator().manual_seed(3))
    assert std.shape == mean.shape and float(std.max()) > 0


def test_regression_inferer_clamps_and_validates():
    net = build_regression_net(2, 1, 1, preset="tiny")
    source = torch.randn(1, 1, 8, 8)
    assert torch.equal(RegressionInferer(clip=False)(source, net), net(source))
    assert RegressionInferer()(source * 100, net).abs().max() <= 1
    with pytest.raises(ValueError, match="DivisiblePad"):
        RegressionInferer()(torch.zeros(1, 1, 8, 7), net)
