"""Prepare-batch objects: targets, kwargs, target-only items, seeded draws and input validation."""

from __future__ import annotations

import pytest
import torch

from drdd_med.diffusion.scheduler import DRDDScheduler, training_timesteps
from drdd_med.engines.prepare_batch import (
    CoupledPrepareBatch,
    NoisePrepareBatch,
    RegressionPrepareBatch,
    ResidualPrepareBatch,
)


def _batch(cs=1):
    g = torch.Generator().manual_seed(0)
    return {"source": torch.rand(2, cs, 8, 8, generator=g), "target": torch.rand(2, 1, 8, 8, generator=g)}


def test_noise_batch_works_on_target_only_items_and_targets_the_noise():
    sched = DRDDScheduler()
    x0, target, args, kwargs = NoisePrepareBatch(sched)({"target": _batch()["target"]})
    assert torch.equal(target, kwargs["noise"]) and args == ()
    assert set(kwargs) == {"noise", "timesteps"}  # no source: an unconditional noise net never sees it
    assert kwargs["timesteps"].shape == (2,) and kwargs["timesteps"].dtype == torch.long
    assert 0 <= int(kwargs["timesteps"].min()) and int(kwargs["timesteps"].max()) < 1000


def test_conditioned_noise_batch_passes_the_source():
    batch = _batch()
    _, _, _, kwargs = NoisePrepareBatch(DRDDScheduler(), conditioned=True)(batch)
    assert torch.equal(kwargs["source"], batch["source"])


def test_residual_batch_targets_anchor_minus_target():
    batch = _batch(cs=3)
    x0, target, _, kwargs = ResidualPrepareBatch(DRDDScheduler())(batch)
    assert torch.equal(x0, batch["target"])
    assert torch.equal(target, batch["source"][:, 1:2] - batch["target"])
    assert set(kwargs) == {"noise", "timesteps", "source"}


def test_coupled_batch_targets_residual_then_noise():
    batch = _batch()
    _, target, _, kwargs = CoupledPrepareBatch(DRDDScheduler())(batch)
    assert torch.equal(target, torch.cat([batch["source"] - batch["target"], kwargs["noise"]], 1))


def test_regression_batch_is_source_and_target():
    batch = _batch()
    source, target = RegressionPrepareBatch()(batch)
    assert torch.equal(source, batch["source"]) and torch.equal(target, batch["target"])


def test_seeded_generator_makes_draws_reproducible():
    draws = [ResidualPrepareBatch(DRDDScheduler(), generator=torch.Generator().manual_seed(4))(_batch())[3]
             for _ in range(2)]
    assert torch.equal(draws[0]["noise"], draws[1]["noise"])
    assert torch.equal(draws[0]["timesteps"], draws[1]["timesteps"])


@pytest.mark.parametrize("make", [lambda s: ResidualPrepareBatch(s), lambda s: CoupledPrepareBatch(s),
                                  lambda s: RegressionPrepareBatch()])
def test_bad_batches_raise(make):
    prepare = make(DRDDScheduler())
    batch = _batch()
    with pytest.raises(ValueError, match="same grid"):
        prepare({"source": batch["source"][..., :6], "target": batch["target"]})
    batch["source"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"batch\['source'\] contains 1 NaN"):
        prepare(batch)
    with pytest.raises(ValueError, match="no key 'source'"):
        prepare({"target": batch["target"]})


def test_sampler_timesteps_draw_only_the_sampler_grid():
    sched = DRDDScheduler()
    grid = training_timesteps(sched, "sampler", 2)
    assert grid == (499, 999)  # the t of the 2 residual sampling steps (999 -> 499 -> -1)
    prepare = ResidualPrepareBatch(sched, timesteps=grid, generator=torch.Generator().manual_seed(0))
    drawn = torch.cat([prepare(_batch())[3]["timesteps"] for _ in range(40)])
    assert set(drawn.tolist()) == {499, 999}  # both, and nothing else
    assert training_timesteps(sched, "uniform", 2) is None
    assert ResidualPrepareBatch(sched).timesteps is None


def test_training_timesteps_are_checked():
    sched = DRDDScheduler()
    with pytest.raises(ValueError, match="must be one of"):
        training_timesteps(sched, "grid", 2)
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        ResidualPrepareBatch(sched, timesteps=[999, 1000])
    with pytest.raises(ValueError, match="non-empty"):
        ResidualPrepareBatch(sched, timesteps=[])


def test_x0_predicting_noise_batch_targets_the_clean_image():
    batch = _batch()
    x0, target, _, kwargs = NoisePrepareBatch(DRDDScheduler(noise_prediction="sample"), conditioned=True)(batch)
    assert torch.equal(target, batch["target"]) and torch.equal(x0, batch["target"])
    assert not torch.equal(target, kwargs["noise"])
