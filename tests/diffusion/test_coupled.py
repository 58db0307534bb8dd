"""CoupledScheduler / sample_coupled: RDDM forward process and oracle exactness of the coupled sampler."""

from __future__ import annotations

import pytest
import torch
from oracles import Reference

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.sampling import sample_coupled


def _pair(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(shape, generator=g) * 2 - 1 for _ in range(2)) + (torch.randn(shape, generator=g),)


def test_forward_process_formula_and_endpoint():
    sched, ref = CoupledScheduler(), Reference()
    x0, source, noise = _pair((2, 1, 6, 6))
    t = torch.tensor([250, 999])
    out = sched.add_coupled(x0, source, noise, t)
    for i, ti in enumerate(t.tolist()):
        expected = x0[i] + ref.residual(ti) * (source[i] - x0[i]) + ref.noise(ti) * noise[i]
        assert torch.allclose(out[i], expected, atol=1e-6)
    assert torch.allclose(out[1], source[1] + ref.sigma_n * noise[1], atol=1e-6)


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
    assert calls == [float(t) for t, _ in Reference().pairs(steps)]  # time input = float timestep
