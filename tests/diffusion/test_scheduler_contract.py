"""The contract both schedulers keep, one test class run over DRDDScheduler and CoupledScheduler (the pattern of
diffusers' scheduler tests): shapes, seeded determinism, step counts, oracle exactness at eta = 0, forward-process /
reverse-step consistency, the shared start ``anchor + sigma_n z`` and argument validation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
from oracles import Reference

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.sampling import sample_coupled, sample_drdd
from drdd_med.diffusion.scheduler import DRDDScheduler

SHAPES = [(2, 1, 8, 8), (1, 2, 4, 4, 4)]


@dataclass
class Process:
    """A forward process ``add(x0, source, eps, t)``, its clean end (s = -1) and its reverse step fed the truth."""

    name: str
    add: Callable[..., torch.Tensor]
    clean: Callable[..., torch.Tensor]
    step: Callable[..., torch.Tensor]


def _drdd_processes(sched: DRDDScheduler) -> list[Process]:
    return [
        Process("noise", lambda x0, src, eps, t: sched.add_noise(x0, eps, t), lambda x0, src, eps: x0,
                lambda x0, src, eps, t, s, x: sched.step_noise(eps, t, s, x)),
        Process("residual", sched.add_residual, lambda x0, src, eps: x0 + sched.sigma_n * eps,
                lambda x0, src, eps, t, s, x: sched.step_residual(src - x0, t, s, x)),
    ]


def _coupled_processes(sched: CoupledScheduler) -> list[Process]:
    return [Process("coupled", sched.add_coupled, lambda x0, src, eps: x0,
                    lambda x0, src, eps, t, s, x: sched.step_coupled(src - x0, eps, t, s, x))]


def _sample_drdd(sched, x0, source, z, steps, **kwargs):
    return sample_drdd(sched, lambda x, s, t: s - x0, lambda x, s, t: z, source, z, steps, steps, **kwargs)


def _sample_coupled(sched, x0, source, z, steps, **kwargs):
    return sample_coupled(sched, lambda x, s, t: (s - x0, z), source, z, steps, **kwargs)


@dataclass
class Case:
    """How the contract drives one scheduler: its processes, the process that ends at the sampler's start, its
    sampler with true-residual / fixed-noise oracles, and the number of network calls for ``steps``."""

    make: Callable[..., DRDDScheduler]
    processes: Callable[[Any], list[Process]]
    start_process: str
    sample: Callable[..., torch.Tensor]
    calls: Callable[[int], int]


CASES = {
    "drdd": Case(DRDDScheduler, _drdd_processes, "residual", _sample_drdd, lambda n: 2 * n),
    "coupled": Case(CoupledScheduler, lambda s: _drdd_processes(s) + _coupled_processes(s), "coupled",
                    _sample_coupled, lambda n: n),
}


def _data(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1, torch.rand(shape, generator=g) * 2 - 1, torch.randn(shape,
                                                                                                       generator=g)


@pytest.fixture(params=sorted(CASES))
def case(request) -> Case:
    return CASES[request.param]


class TestSchedulerContract:
    @pytest.mark.parametrize("shape", SHAPES)
    def test_forward_processes_keep_shape_and_broadcast_per_sample_timesteps(self, case, shape):
        sched = case.make()
        x0, source, eps = _data(shape)
        t = torch.tensor([7, 900])[: shape[0]]
        for process in case.processes(sched):
            out = process.add(x0, source, eps, t)
            assert out.shape == x0.shape and out.dtype == x0.dtype, process.name
            for i, ti in enumerate(t.tolist()):
                one = process.add(x0[i:i + 1], source[i:i + 1], eps[i:i + 1], torch.tensor([ti]))
                torch.testing.assert_close(out[i:i + 1], one, atol=1e-6, rtol=0)

    @pytest.mark.parametrize("steps", [1, 2, 5])
    def test_reverse_step_with_the_truth_moves_along_the_forward_process(self, case, steps):
        sched = case.make()
        x0, source, eps = _data((2, 1, 6, 6))
        for process in case.processes(sched):
            for t, s in sched.timestep_pairs(steps):
                x_t = process.add(x0, source, eps, torch.tensor([t]))
                expected = process.add(x0, source, eps, torch.tensor([s])) if s >= 0 else process.clean(x0, source,
                                                                                                         eps)
                torch.testing.assert_close(process.step(x0, source, eps, t, s, x_t), expected, atol=1e-5, rtol=0,
                                           msg=f"{process.name} step {t} -> {s}")

    def test_the_start_is_the_forward_process_at_the_last_timestep(self, case):
        sched = case.make()
        x0, source, eps = _data((2, 1, 6, 6))
        process = {p.name: p for p in case.processes(sched)}[case.start_process]
        end = process.add(x0, source, eps, torch.tensor([sched.num_train_timesteps - 1]))
        torch.testing.assert_close(end, source + Reference().sigma_n * eps, atol=1e-6, rtol=0)

    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize("steps", [1, 2, 5, 10])
    def test_oracle_sampling_is_exact_at_eta_zero(self, case, shape, steps):
        x0, source, z = _data(shape)
        out = case.sample(case.make(), x0, source, z, steps)
        assert out.shape == x0.shape and out.dtype == x0.dtype
        assert (out - x0).abs().max() <= 1e-5

    @pytest.mark.parametrize("steps", [1, 3])
    def test_one_step_per_interval_of_the_ddim_grid(self, case, steps):
        sched = case.make()
        x0, source, z = _data((1, 1, 4, 4))
        infos = []
        case.sample(sched, x0, source, z, steps, callback=infos.append)
        assert len(infos) == case.calls(steps)
        grid = Reference().pairs(steps)
        assert [(i["t"], i["s"]) for i in infos] == grid * (case.calls(steps) // steps)
        assert [i["step"] for i in infos] == list(range(steps)) * (case.calls(steps) // steps)

    def test_seeded_stochastic_sampling_is_reproducible(self, case):
        sched = case.make()
        x0, source, z = _data((1, 1, 16, 16))

        def run(seed, eta=1.0):
            gen = None if seed is None else torch.Generator().manual_seed(seed)
            return case.sample(sched, x0, source, z, 3, eta=eta, generator=gen)

        assert torch.equal(run(5), run(5)) and not torch.equal(run(5), run(6))
        assert torch.equal(run(5, eta=0.0), run(None, eta=0.0))  # eta = 0 draws nothing

    def test_noise_step_sigma_is_ddim_on_the_variance(self, case):
        sched, ref = case.make(), Reference()
        for eta in (0.0, 0.3, 1.0):
            b_t, b_s = ref.noise(999), ref.noise(499)
            expected = math.sqrt(eta * (b_t**2 - b_s**2) * b_s**2 / b_t**2)
            assert sched.noise_step_sigma(999, 499, eta) == pytest.approx(expected, rel=1e-6)
        assert sched.noise_step_sigma(499, -1, 1.0) == 0.0  # the last step is deterministic

    @pytest.mark.parametrize("eta", [-0.1, 1.01, 12.7, 13.0, float("nan")])
    def test_eta_outside_the_unit_interval_is_a_value_error_before_any_step(self, case, eta):
        sched = case.make()
        x0, source, z = _data((1, 1, 4, 4))
        with pytest.raises(ValueError, match=r"eta=.* must be in \[0, 1\]"):
            case.sample(sched, x0, source, z, 2, eta=eta, callback=lambda info: pytest.fail("a step ran"))
        with pytest.raises(ValueError, match=r"eta=.* must be in \[0, 1\]"):
            sched.step_noise(z, 999, 499, z, eta=eta)

    @pytest.mark.parametrize("steps", [0, -1, 1001])
    def test_step_counts_out_of_range_are_value_errors_before_any_step(self, case, steps):
        sched = case.make()
        x0, source, z = _data((1, 1, 4, 4))
        with pytest.raises(ValueError, match="step"):
            case.sample(sched, x0, source, z, steps, callback=lambda info: pytest.fail("a step ran"))

    def test_has_no_sampling_state(self, case):
        """The step counts are arguments of the sampling loop: no ``set_timesteps`` state that nothing reads."""
        assert not hasattr(case.make(), "set_timesteps")
