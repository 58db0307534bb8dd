"""CoupledScheduler / sample_coupled: RDDM forward process and oracle exactness of the coupled sampler."""

from __future__ import annotations

import pytest
import torch

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.sampling import sample_coupled


def _pair(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(shape, generator=g) * 2 - 1 for _ in range(2)) + (torch.randn(shape, generator=g),)


def test_forward_process_formula_and_endpoint():
    sched = CoupledScheduler()
    x0, source, noise = _pair((2, 1, 6, 6))
    t = torch.tensor([250, 999])
    out = sched.add_coupled(x0, source, noise, t)
    for i, ti in enumerate(t.tolist()):
        expected = x0[i] + sched.residual_coef_at(ti) * (source[i] - x0[i]) + sched.noise_coef_at(ti) * noise[i]
        assert torch.allclose(out[i], expected, atol=1e-6)
    assert torch.allclose(out[1], source[1] + sched.sigma_n * noise[1], atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (1, 2, 4, 4, 4)])
@pytest.mark.parametrize("steps", [2, 4, 5, 10])
def test_coupled_oracle_recovers_x0(shape, steps):
    sched = CoupledScheduler()
    x0, source, z = _pair(shape)
    calls = []

    def model_fn(x, s, t_input):
        calls.append(float(t_input[0]))
        return s - x0, z

    out = sample_coupled(sched, model_fn, source, z, steps)
    assert (out - x0).abs().max() <= 1e-5
    assert calls == [float(t) for t, _ in sched.timestep_pairs(steps)]  # time input = float timestep


def test_coupled_step_removes_both_components_each_step():
    sched = CoupledScheduler()
    x0, source, z = _pair((1, 1, 4, 4))
    x_t = sched.add_coupled(x0, source, z, torch.tensor([999]))
    x_s = sched.step_coupled(source - x0, z, 999, 499, x_t)
    assert torch.allclose(x_s, sched.add_coupled(x0, source, z, torch.tensor([499])), atol=1e-5)
