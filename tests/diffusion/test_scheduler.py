"""DRDDScheduler: schedule values (METHOD.md §2 table), forward processes (§3) and reverse steps (§6)."""

from __future__ import annotations

import math

import pytest
import torch
from oracles import Reference

from drdd_med.diffusion.scheduler import DRDDScheduler


# (t, raw ᾱ_t, normalised ᾱ_t, β̄_t) from METHOD.md §2
TABLE = [
    (0, 0.00005, 0.00005, 0.0100),
    (99, 0.05289, 0.05323, 0.32091),
    (249, 0.27606, 0.27783, 0.68987),
    (499, 0.71967, 0.72427, 0.95990),
    (749, 0.94212, 0.94814, 0.99832),
    (999, 0.99365, 1.00000, 0.99998),
]


@pytest.mark.parametrize("t, raw, normalised, noise", TABLE)
def test_schedule_matches_method_table(t, raw, normalised, noise):
    norm, code = DRDDScheduler(), DRDDScheduler(residual_schedule="code")
    assert float(norm.noise_coef[t]) == pytest.approx(noise, abs=1e-5)
    assert float(code.residual_coef[t]) == pytest.approx(raw, abs=1e-5)
    assert float(norm.residual_coef[t]) == pytest.approx(normalised, abs=1e-5)
    # time inputs: 1000·ᾱ_t and 1000·β̄_t (unit noise level)
    assert float(code.time_input_residual(t)) == pytest.approx(1000 * raw, abs=1e-2)
    assert float(norm.time_input_noise(t)) == pytest.approx(1000 * noise, abs=1e-2)


def test_schedule_agrees_with_independent_float64_computation():
    sched = DRDDScheduler(residual_schedule="code")
    ref = Reference()
    for t in (0, 10, 500, 999):
        abar = float(ref.abar[t])
        assert sched.noise_coef_at(t) == pytest.approx(math.sqrt(1 - abar), abs=2e-6)
        assert sched.residual_coef_at(t) == pytest.approx(1 - math.sqrt(abar), abs=2e-6)


def test_normalized_endpoint_is_exactly_one_and_code_endpoint_is_raw():
    assert float(DRDDScheduler().residual_coef[-1]) == 1.0
    assert float(DRDDScheduler(residual_schedule="code").residual_coef[-1]) == pytest.approx(0.993647, abs=2e-6)


@pytest.mark.parametrize("level", [0.5, 1.0, 1.8])
def test_noise_level_scales_noise_coef_but_not_the_time_input(level):
    base, sched = DRDDScheduler(), DRDDScheduler(noise_level=level)
    assert torch.allclose(sched.noise_coef, level * base.noise_coef, atol=1e-6)
    assert sched.sigma_n == pytest.approx(level * 0.99998, abs=1e-5)
    t = torch.arange(1000)
    assert torch.allclose(sched.time_input_noise(t), base.time_input_noise(t), atol=1e-3)
    assert torch.equal(sched.residual_coef, base.residual_coef)


@pytest.mark.parametrize("n, expected", [(2, [999, 499, -1]), (3, [999, 665, 332, -1]),
                                         (5, [999, 799, 599, 399, 199, -1]), (10, list(range(999, -1, -100)) + [-1])])
def test_timesteps_for_matches_method_grid(n, expected):
    assert DRDDScheduler().timesteps_for(n) == expected


def test_default_two_step_updates_match_method_6_2():
    code = DRDDScheduler(residual_schedule="code")
    (t1, s1), (t2, s2) = code.timestep_pairs(2)
    assert code.residual_coef_at(t1) - code.residual_coef_at(s1) == pytest.approx(0.27398, abs=1e-5)
    assert code.residual_coef_at(t2) - code.residual_coef_at(s2) == pytest.approx(0.71967, abs=1e-5)
    assert code.noise_coef_at(t1) - code.noise_coef_at(s1) == pytest.approx(0.04008, abs=1e-5)
    assert code.noise_coef_at(t2) - code.noise_coef_at(s2) == pytest.approx(0.95990, abs=1e-5)


def test_noise_stage_marginal_has_mean_x0_and_std_noise_coef():
    sched = DRDDScheduler()
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((1, 1, 200, 200), 0.3)
    noise = torch.randn(x0.shape, generator=g)
    x_t = sched.add_noise(x0, noise, torch.tensor([249]))
    assert float(x_t.mean()) == pytest.approx(0.3, abs=0.01)
    assert float(x_t.std()) == pytest.approx(0.68987, rel=0.02)
    assert torch.allclose(x_t, x0 + Reference().noise(249) * noise)


def test_residual_stage_endpoints():
    sched, ref = DRDDScheduler(), Reference()
    g = torch.Generator().manual_seed(1)
    x0, source, noise = (torch.randn(2, 1, 8, 8, generator=g) for _ in range(3))
    start = sched.add_residual(x0, source, noise, torch.tensor([0]))
    # ᾱ_0 ≈ 5e-5: the residual stage starts at the noise stage's state at σ_n
    assert torch.allclose(start, x0 + ref.sigma_n * noise + ref.residual(0) * (source - x0), atol=1e-6)
    assert torch.allclose(start, sched.add_noise(x0, noise, torch.tensor([999])), atol=5e-4)
    end = sched.add_residual(x0, source, noise, torch.tensor([999, 999]))
    assert torch.allclose(end, source + ref.sigma_n * noise, atol=1e-6)  # the noise-carrying input


def test_per_sample_timesteps_are_broadcast_per_sample():
    sched, ref = DRDDScheduler(), Reference()
    x0, noise = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    out = sched.add_noise(x0, noise, torch.tensor([0, 999]))
    assert torch.allclose(out[0], torch.full_like(out[0], ref.noise(0)))
    assert torch.allclose(out[1], torch.full_like(out[1], ref.noise(999)))


def test_step_noise_with_eta_is_seeded_and_has_the_ddim_sigma():
    sched = DRDDScheduler()
    x, eps = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    a = sched.step_noise(eps, 999, 499, x, eta=1.0, generator=torch.Generator().manual_seed(5))
    b = sched.step_noise(eps, 999, 499, x, eta=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    ref = Reference()
    b_t, b_s = ref.noise(999), ref.noise(499)
    assert float(a.std()) == pytest.approx(math.sqrt((b_t**2 - b_s**2) * b_s**2 / b_t**2), rel=0.05)


@pytest.mark.parametrize("kwargs", [{"noise_level": 0.0}, {"noise_level": -1.0}, {"residual_schedule": "raw"},
                                    {"num_train_timesteps": 1}, {"noise_prediction": "v_prediction"}])
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        DRDDScheduler(**kwargs)


def test_invalid_step_count_raises():
    with pytest.raises(ValueError, match="number of steps"):
        DRDDScheduler().timesteps_for(0)


def test_absolute_time_input_lets_one_denoiser_serve_several_noise_levels():
    """With absolute time inputs, every sampling state of a level ≤ σ_max gets the time input the denoiser saw in
    training at the same noise std; with the reference "level" input the same std gets another input per level."""
    prior = DRDDScheduler(noise_level=1.0, noise_time_input="absolute", noise_sigma_max=1.0)
    train_std, train_input = prior.train_noise_coef.double(), prior.time_input_noise_train(torch.arange(1000)).double()
    for level in (0.2, 0.5, 1.0):
        sampler = DRDDScheduler(noise_level=level, noise_time_input="absolute", noise_sigma_max=1.0)
        assert sampler.sigma_n == pytest.approx(level * float(torch.sqrt(1 - sampler.abar[-1].double())), rel=1e-6)
        for t in sampler.timesteps_for(4)[:-1]:
            sigma = float(sampler.noise_coef[t])
            seen = int(torch.argmin((train_std - sigma).abs()))
            assert float(train_std[seen]) == pytest.approx(sigma, rel=2e-2)  # that std is in the training range
            assert float(sampler.time_input_noise(t)) == pytest.approx(float(train_input[seen]), rel=2e-2)
            assert float(sampler.time_input_noise(t)) == pytest.approx(1000.0 * sigma, rel=1e-6)
    tied = [float(DRDDScheduler(noise_level=v).time_input_noise(999)) for v in (0.2, 1.0)]
    assert tied[0] == pytest.approx(tied[1])  # "level": σ 0.2 and σ 1.0 both read as 1000


def test_level_time_input_is_the_reference_default_and_noise_sigma_max_needs_absolute():
    level = DRDDScheduler(noise_level=0.2)
    torch.testing.assert_close(level.train_noise_coef, level.noise_coef)
    assert float(level.time_input_noise(999)) == pytest.approx(1000 * float(level.noise_coef[999]) / 0.2, rel=1e-6)
    absolute = DRDDScheduler(noise_level=0.2, noise_time_input="absolute")
    torch.testing.assert_close(absolute.train_noise_coef, absolute.noise_coef)  # σ_max defaults to the level
    with pytest.raises(ValueError, match="needs noise_time_input='absolute'"):
        DRDDScheduler(noise_level=0.2, noise_sigma_max=1.0)
    with pytest.raises(ValueError, match="below noise_level"):
        DRDDScheduler(noise_level=0.5, noise_time_input="absolute", noise_sigma_max=0.2)
    with pytest.raises(ValueError, match="noise_time_input must be one of"):
        DRDDScheduler(noise_time_input="sigma")
