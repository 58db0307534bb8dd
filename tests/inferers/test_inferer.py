"""DRDDInferer: oracle exactness of every step, reproducibility, ensembles, noise-level guard and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracles import oracle_drdd_net, sample_exact_path

from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.inferers.inferer import DRDDInferer
from drdd_med.networks.factory import build_drdd_net

SHAPES = {2: (2, 1, 16, 16), 3: (1, 1, 8, 8, 8)}


def _pair(spatial_dims: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[spatial_dims]
    return torch.rand(shape, generator=g) * 1.8 - 0.9, torch.rand(shape, generator=g) * 2 - 1


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("steps", [(2, 2), (5, 5), (3, 10)])
@pytest.mark.parametrize("conditioned", [False, True])
def test_oracle_sampling_follows_the_exact_path(spatial_dims, steps, conditioned):
    x0, source = _pair(spatial_dims)
    net = oracle_drdd_net(1, target=x0, noise_conditioned=conditioned)
    out = sample_exact_path(DRDDInferer(DRDDScheduler(), *steps), net, source, x0, source, steps,
                            generator=torch.Generator().manual_seed(1))
    assert out.shape == x0.shape and (out - x0).abs().max() <= 1e-5


@pytest.mark.parametrize("level", [0.5, 1.5])
def test_oracle_exact_at_other_noise_levels_with_a_25d_stack(level):
    """The target depends on all three slices of the stack and the residual on the middle one."""
    source = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    prev, mid, nxt = source[:, 0:1], source[:, 1:2], source[:, 2:3]
    x0 = 0.9 * torch.tanh(-2 * mid) + 0.1 * (nxt - prev)
    net = oracle_drdd_net(1, target_fn=lambda s: 0.9 * torch.tanh(-2 * s[:, 1:2]) + 0.1 * (s[:, 2:3] - s[:, 0:1]),
                          noise_level=level)
    out = sample_exact_path(DRDDInferer(DRDDScheduler(noise_level=level), 3, 4), net, source, x0, mid, (3, 4), level,
                            generator=torch.Generator().manual_seed(3))
    assert (out - x0).abs().max() <= 1e-5


def test_seeded_sampling_is_bit_reproducible_and_seed_dependent():
    torch.manual_seed(0)
    net = build_drdd_net(2, 1, 1, preset="tiny")
    source = torch.rand(1, 1, 16, 16) * 2 - 1
    inferer = DRDDInferer(DRDDScheduler(), eta=1.0, noise_steps=3)
    a = inferer(source, net, generator=torch.Generator().manual_seed(11))
    b = inferer(source, net, generator=torch.Generator().manual_seed(11))
    c = inferer(source, net, generator=torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    assert net.training  # the inferer restores the mode it found


def test_ensemble_is_the_mean_and_unbiased_std_of_consecutive_samples():
    x0, source = _pair(2)
    oracle = oracle_drdd_net(1, target=x0)
    mean, std = DRDDInferer(DRDDScheduler()).sample(source, oracle, num_samples=3)
    assert mean.shape == std.shape == x0.shape
    assert (mean - x0).abs().max() <= 1e-5 and std.abs().max() <= 1e-5
    net = build_drdd_net(2, 1, 1, preset="tiny")
    inferer = DRDDInferer(DRDDScheduler(), eta=1.0)
    mean, std = inferer.sample(source, net, num_samples=4, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)  # the same draws, one sample per call
    singles = np.stack([inferer.sample(source, net, generator=gen).numpy() for _ in range(4)])
    assert (singles.std(axis=0) > 0).mean() > 0.5  # the samples differ: the std map is not trivially 0
    np.testing.assert_allclose(mean.numpy(), singles.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(std.numpy(), singles.std(axis=0, ddof=1), atol=1e-6)


def test_return_intermediates_lists_every_step():
    x0, source = _pair(2)
    out, steps = DRDDInferer(DRDDScheduler()).sample(source, oracle_drdd_net(1, target=x0), return_intermediates=True)
    expected = [("residual", 999), ("residual", 499), ("noise", 999), ("noise", 499)]
    assert [(s["stage"], s["t"]) for s in steps] == expected
    assert torch.equal(steps[-1]["x"].clamp(-1, 1), out)


def test_subtract_noise_ablation_never_calls_the_noise_net():
    x0, source = _pair(2)
    net = oracle_drdd_net(1, target=x0)
    net.noise_net.forward = lambda *a, **k: (_ for _ in ()).throw(AssertionError("noise net called"))
    out = DRDDInferer(DRDDScheduler(), subtract_noise=True)(source, net)
    assert (out - x0).abs().max() <= 1e-5


def test_noise_level_mismatch_is_refused_unless_allowed():
    x0, source = _pair(2)
    net = oracle_drdd_net(1, target=x0, noise_level=1.0)
    with pytest.raises(ValueError, match=r"noise_level=0.8.*allow_noise_level_mismatch"):
        DRDDInferer(DRDDScheduler(noise_level=0.8))(source, net)
    out = DRDDInferer(DRDDScheduler(noise_level=0.8), allow_noise_level_mismatch=True)(source, net)
    assert out.shape == x0.shape


def test_bad_inputs_raise_clear_errors():
    net = build_drdd_net(2, 1, 1, preset="tiny", channels=(8, 16, 16), attention_levels=(False,) * 3)
    inferer = DRDDInferer(DRDDScheduler())
    with pytest.raises(ValueError, match=r"not divisible by the network's factor 4.*DivisiblePad"):
        inferer(torch.zeros(1, 1, 16, 18), net)
    bad = torch.zeros(1, 1, 16, 16)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        inferer(bad, net)
    with pytest.raises(ValueError, match="num_samples"):
        inferer(torch.zeros(1, 1, 16, 16), net, num_samples=0)


def test_hooks_can_be_overridden_by_subclasses():
    x0, source = _pair(2)
    calls = []

    class Counting(DRDDInferer):
        def residual_fn(self, network):
            fn = super().residual_fn(network)
            return lambda *a: calls.append("r") or fn(*a)

        def initial_noise(self, shape, generator, device, dtype):
            calls.append("z")
            return torch.zeros(shape, dtype=dtype, device=device)

    net = oracle_drdd_net(1, target=x0)
    out = Counting(DRDDScheduler(), residual_steps=3)(source, net)
    assert calls == ["z", "r", "r", "r"] and (out - x0).abs().max() <= 1e-5
