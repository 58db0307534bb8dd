"""sample_drdd: oracle exactness (METHOD.md §10.1 items 3-5), stage order, the no-denoiser ablation."""

from __future__ import annotations

import pytest
import torch
from oracles import Reference

from drdd_med.diffusion.sampling import sample_drdd
from drdd_med.diffusion.scheduler import DRDDScheduler

STEPS = [(2, 2), (5, 5), (10, 10), (3, 1)]
SHAPES = {2: (2, 1, 8, 8), 3: (1, 1, 4, 4, 4)}


def _pair(spatial_dims: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[spatial_dims]
    x0 = torch.rand(shape, generator=g) * 2 - 1
    source = torch.rand(shape, generator=g) * 2 - 1
    z = torch.randn(shape, generator=g)
    return x0, source, z


def _true_residual(x0):
    return lambda x, source, t_input: source - x0


def _fixed_noise(z):
    return lambda x, source, t_input: z


def _consistent_noise(x0, sched):
    # ε = (x - x0) / β̄_t with β̄_t recovered from the time input 1000·β̄_t/noise_level
    return lambda x, source, t_input: (x - x0) / (t_input.view(-1, *[1] * (x.ndim - 1)) * sched.noise_level / 1000)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("n_res, n_noise", STEPS)
def test_oracle_recovers_x0_with_normalized_schedule(spatial_dims, n_res, n_noise):
    sched = DRDDScheduler()
    x0, source, z = _pair(spatial_dims)
    out = sample_drdd(sched, _true_residual(x0), _fixed_noise(z), source, z, n_res, n_noise)
    assert (out - x0).abs().max() <= 1e-5


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("n_res, n_noise", STEPS)
def test_oracle_deviation_with_code_schedule(spatial_dims, n_res, n_noise):
    # METHOD.md §10.1 item 3: output = x0 + (1 - ᾱ_999)(source - x0) + (σ_n - β̄_999) z, and σ_n = β̄_999 here
    sched = DRDDScheduler(residual_schedule="code")
    x0, source, z = _pair(spatial_dims)
    out = sample_drdd(sched, _true_residual(x0), _fixed_noise(z), source, z, n_res, n_noise)
    expected = (1 - 0.993647) * (source - x0)
    assert (out - x0 - expected).abs().max() <= 1e-5
    assert (out - x0).abs().max() > 1e-3  # the bias is real, not within tolerance


@pytest.mark.parametrize("level", [0.3, 1.0, 1.5])
@pytest.mark.parametrize("n_res, n_noise", [(2, 2), (4, 7)])
def test_consistent_noise_oracle_gives_x0_for_any_residual_error(level, n_res, n_noise):
    # METHOD.md §10.1 item 4
    sched = DRDDScheduler(noise_level=level, residual_schedule="code")
    x0, source, z = _pair(2, seed=3)
    error = 0.3 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    residual_fn = lambda x, s, t: s - x0 + error  # noqa: E731
    out = sample_drdd(sched, residual_fn, _consistent_noise(x0, sched), source, z, n_res, n_noise)
    assert (out - x0).abs().max() <= 1e-5


@pytest.mark.parametrize("n_res, n_noise", [(2, 2), (5, 3)])
def test_no_noise_call_before_all_residual_steps(n_res, n_noise):
    # METHOD.md §10.1 item 5: network calls are n_res + n_noise, residual ones first
    sched = DRDDScheduler()
    x0, source, z = _pair(2)
    calls = []

    def residual_fn(x, s, t):
        calls.append(("residual", float(t[0])))
        return s - x0

    def noise_fn(x, s, t):
        calls.append(("noise", float(t[0])))
        return z

    sample_drdd(sched, residual_fn, noise_fn, source, z, n_res, n_noise)
    assert [c[0] for c in calls] == ["residual"] * n_res + ["noise"] * n_noise
    # time inputs are the scheduler's, in decreasing order per stage
    ref = Reference()
    expected_res = [1000 * ref.residual(t) for t, _ in ref.pairs(n_res)]
    assert [c[1] for c in calls[:n_res]] == pytest.approx(expected_res, rel=1e-5)
    assert [c[1] for c in calls[n_res:]] == pytest.approx([1000 * ref.noise(t) for t, _ in ref.pairs(n_noise)],
                                                          rel=1e-5)


def test_time_input_is_a_1d_float_tensor_of_batch_size():
    sched = DRDDScheduler()
    x0, source, z = _pair(2)
    seen = []
    fn = lambda x, s, t: seen.append(t) or torch.zeros_like(x)  # noqa: E731
    sample_drdd(sched, fn, fn, source, z, 1, 1)
    assert all(t.shape == (x0.shape[0],) and t.dtype == torch.float32 for t in seen)


def test_subtract_noise_ablation_is_exact_for_a_perfect_residual_net_and_never_calls_noise():
    sched = DRDDScheduler()
    x0, source, z = _pair(2)

    def noise_fn(*args):
        raise AssertionError("noise net called in the no-denoiser ablation")

    out = sample_drdd(sched, _true_residual(x0), noise_fn, source, z, 2, 0, subtract_noise=True)
    assert (out - x0).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="noise_steps=0"):
        sample_drdd(sched, _true_residual(x0), noise_fn, source, z, 2, 2, subtract_noise=True)


def test_zero_noise_steps_returns_the_hand_over_state():
    sched = DRDDScheduler()
    x0, source, z = _pair(2)
    out = sample_drdd(sched, _true_residual(x0), None, source, z, 3, 0)
    assert torch.allclose(out, x0 + Reference().sigma_n * z, atol=1e-5)


def test_stochastic_noise_stage_is_reproducible_with_a_seeded_generator():
    sched = DRDDScheduler()
    x0, source, z = _pair(2)
    runs = [
        sample_drdd(sched, _true_residual(x0), _fixed_noise(z), source, z, 2, 4, eta=1.0,
                    generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    other = sample_drdd(sched, _true_residual(x0), _fixed_noise(z), source, z, 2, 4, eta=1.0,
                        generator=torch.Generator().manual_seed(8))
    assert not torch.equal(runs[0], other)


def test_callback_sees_every_step_in_order():
    sched = DRDDScheduler()
    x0, source, z = _pair(2)
    infos = []
    sample_drdd(sched, _true_residual(x0), _fixed_noise(z), source, z, 2, 3, callback=infos.append)
    assert [(i["stage"], i["t"], i["s"]) for i in infos] == [
        ("residual", 999, 499), ("residual", 499, -1), ("noise", 999, 665), ("noise", 665, 332), ("noise", 332, -1)]
    # after the residual stage, x is the noise stage's state at t = T-1
    assert torch.allclose(infos[1]["x"], x0 + Reference().sigma_n * z, atol=1e-5)


@pytest.mark.parametrize("n_res, n_noise, message", [(0, 2, "residual_steps=0"), (2, -1, "noise_steps=-1"),
                                                     (1001, 0, "at most T=1000")])
def test_step_counts_are_checked_before_any_network_call(n_res, n_noise, message):
    x0, source, z = _pair(2)

    def never(*args):
        raise AssertionError("a network was called")

    with pytest.raises(ValueError, match=message):
        sample_drdd(DRDDScheduler(), never, never, source, z, n_res, n_noise)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("n_res, n_noise", [(1, 2), (2, 2), (4, 7)])
def test_x0_predicting_denoiser_samples_like_the_epsilon_one_it_matches(eta, n_res, n_noise):
    """A noise net that predicts x0 (``noise_prediction="sample"``) and one predicting the ε of that x0 take the
    same DDIM path (the scheduler converts x̂0 to ε̂); a perfect x0 oracle returns x0 whatever the residual error."""
    eps_sched = DRDDScheduler(noise_level=0.2)
    x0_sched = DRDDScheduler(noise_level=0.2, noise_prediction="sample")
    x0, source, z = _pair(2, seed=4)
    guess = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))  # an imperfect x̂0
    error = 0.3 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    residual_fn = lambda x, s, t: s - x0 + error  # noqa: E731
    as_eps = lambda x, s, t: (x - guess) / (t.view(-1, 1, 1, 1) * eps_sched.noise_level / 1000)  # noqa: E731
    runs = [sample_drdd(sched, residual_fn, fn, source, z, n_res, n_noise, eta=eta,
                        generator=torch.Generator().manual_seed(1))
            for sched, fn in ((eps_sched, as_eps), (x0_sched, lambda x, s, t: guess))]
    torch.testing.assert_close(runs[0], runs[1], atol=2e-5, rtol=0)
    if eta == 0.0:
        torch.testing.assert_close(runs[1], guess, atol=2e-5, rtol=0)  # the last step returns x̂0
    perfect = sample_drdd(x0_sched, residual_fn, lambda x, s, t: x0, source, z, n_res, n_noise)
    assert (perfect - x0).abs().max() <= 1e-5
