"""CoupledInferer / RegressionInferer: oracle exactness and the MONAI call convention."""

from __future__ import annotations

import pytest
import torch
from oracles import OracleCoupledNet, Reference

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.inferers.baselines import CoupledInferer, RegressionInferer
from drdd_med.networks.factory import build_coupled_net, build_regression_net


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (1, 1, 4, 4, 4)])
@pytest.mark.parametrize("steps", [2, 4, 10])
def test_coupled_inferer_oracle_follows_the_exact_path(shape, steps):
    """Every state the net sees is ``x0 + ᾱ_t (source - x0) + β̄_t z`` at the grid's t; the output is x0."""
    g = torch.Generator().manual_seed(0)
    x0, source = torch.rand(shape, generator=g) * 2 - 1, torch.rand(shape, generator=g) * 2 - 1
    ref = Reference()
    net = OracleCoupledNet(ref, 1, target=x0)
    out = CoupledInferer(CoupledScheduler(), num_steps=steps)(source, net, generator=torch.Generator().manual_seed(1))
    z = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    assert [t for _, t in net.states] == [t for t, _ in ref.pairs(steps)]
    for x, t in net.states:
        assert (x - (x0 + ref.residual(t) * (source - x0) + ref.noise(t) * z)).abs().max() <= 1e-5, t
    assert (out - x0).abs().max() <= 1e-5


def test_coupled_inferer_is_reproducible_and_gives_std():
    torch.manual_seed(0)
    net = build_coupled_net(2, 1, 1, preset="tiny", entangled=True)
    inferer = CoupledInferer(CoupledScheduler(), eta=1.0)
    source = torch.rand(1, 1, 8, 8)
    a = inferer(source, net, generator=torch.Generator().manual_seed(3))
    b = inferer(source, net, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (1, 1, 8, 8)
    mean, std = inferer(source, net, num_samples=3, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)  # the same draws, one sample per call
    singles = torch.stack([inferer(source, net, generator=gen) for _ in range(3)])
    assert not torch.equal(singles[0], singles[1])
    torch.testing.assert_close(mean, singles.mean(dim=0), atol=1e-6, rtol=0)
    torch.testing.assert_close(std, singles.std(dim=0), atol=1e-6, rtol=0)


def test_regression_inferer_clamps_and_validates():
    net = build_regression_net(2, 1, 1, preset="tiny")
    source = torch.randn(1, 1, 8, 8)
    assert torch.equal(RegressionInferer(clip=False)(source, net), net(source))
    assert RegressionInferer()(source * 100, net).abs().max() <= 1
    with pytest.raises(ValueError, match="DivisiblePad"):
        RegressionInferer()(torch.zeros(1, 1, 8, 7), net)
