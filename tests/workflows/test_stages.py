"""Stage checkpoints: weights_only round trip, resume at the saved iteration, skip when complete, crash-safe 0o644
writes, EMA export."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.engines import ModelEMA, NoisePrepareBatch, NoiseStageInferer
from drdd_med.workflows.model_config import ModelConfig, load_weights
from drdd_med.workflows.stages import NetworkTraining, StageCheckpoint, ema_network, export_model, run_stage


def make_stage(tmp_path, config, epochs=2, epoch_length=3, interval=2, seed=0):
    """A noise-stage trainer on a fixed 16x16 batch with its checkpoint handler, as train.json wires it."""
    torch.manual_seed(seed)
    net = config.build_network()
    sched = DRDDScheduler()
    batch = {"target": torch.rand(2, 1, 16, 16) * 2 - 1}
    optim = NetworkTraining("noise", net.noise_net, ModelEMA(net.noise_net, decay=0.9), epochs * epoch_length,
                            learning_rate=1e-3, warmup_iterations=1)
    ckpt = StageCheckpoint(tmp_path / "noise_checkpoint.pt", optim.save_dict, interval=interval)
    trainer = SupervisedTrainer(
        device="cpu", max_epochs=epochs, epoch_length=epoch_length, train_data_loader=[batch], network=net,
        optimizer=optim.optimizer, loss_function=torch.nn.MSELoss(),
        prepare_batch=NoisePrepareBatch(sched, generator=torch.Generator().manual_seed(seed)),
        inferer=NoiseStageInferer(sched), train_handlers=[optim, ckpt],
    )
    return net, optim.optimizer, optim.ema, ckpt, trainer


@pytest.fixture
def config():
    return ModelConfig(preset="tiny", network_overrides={"channels": [8, 8], "norm_num_groups": 8})


def adam_steps(opt):
    return {int(s["step"]) for s in opt.state.values()}


def test_checkpoint_holds_plain_types_and_loads_with_weights_only(tmp_path, config, single_thread):
    net, opt, ema, ckpt, trainer = make_stage(tmp_path, config)
    run_stage("noise", trainer, ckpt)
    state = torch.load(ckpt.path, weights_only=True)
    assert state["trainer"] == {"iteration": 6, "epoch_length": 3, "max_epochs": 2, "budget_iterations": 0}
    assert set(state) == {"noise_net", "noise_optimizer", "noise_lr_scheduler", "noise_ema", "trainer"}
    assert int(state["noise_ema"]["n_averaged"]) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["noise_checkpoint.pt"], "temporary files left behind"


def test_resume_continues_from_saved_iteration_with_optimizer_and_ema(tmp_path, config, single_thread, caplog):
    # an interrupted run: stop after iteration 4 (a checkpoint is written at iterations 2 and 4)
    _, _, _, ckpt, trainer = make_stage(tmp_path, config)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.terminate() if e.state.iteration == 4 else None)
    trainer.run()
    assert torch.load(ckpt.path, weights_only=True)["trainer"]["iteration"] == 4
    # a fresh process: same configuration, resumes at 4 and runs the remaining 2 iterations
    net, opt, ema, ckpt2, trainer2 = make_stage(tmp_path, config, seed=1)
    seen: list[int] = []
    trainer2.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.iteration))
    with caplog.at_level(logging.INFO, logger="drdd_med.workflows.stages"):
        assert run_stage("noise", trainer2, ckpt2) == 6
    assert seen == [5, 6]
    assert "resuming noise stage from iteration 4 of 6" in caplog.text
    assert adam_steps(opt) == {6}  # the optimizer state was restored (a fresh Adam would count 2)
    assert int(ema.ema_model.n_averaged) == 6  # the EMA continued (a fresh one would count 2)
    assert int(torch.load(ckpt2.path, weights_only=True)["noise_lr_scheduler"]["last_epoch"]) == 6


def test_complete_stage_is_skipped_and_its_weights_loaded(tmp_path, config, single_thread, caplog):
    net, _, ema, ckpt, trainer = make_stage(tmp_path, config)
    run_stage("noise", trainer, ckpt)
    trained = {k: v.clone() for k, v in net.noise_net.state_dict().items()}
    net2, opt2, ema2, ckpt2, trainer2 = make_stage(tmp_path, config, seed=3)
    calls: list[int] = []
    trainer2.add_event_handler(Events.ITERATION_COMPLETED, lambda e: calls.append(e.state.iteration))
    with caplog.at_level(logging.INFO, logger="drdd_med.workflows.stages"):
        assert run_stage("noise", trainer2, ckpt2) == 6
    assert calls == []  # no retraining
    assert "noise stage is complete (iteration 6 of 6" in caplog.text
    assert all(torch.equal(trained[k], v) for k, v in net2.noise_net.state_dict().items())
    assert all(torch.equal(a, b) for a, b in zip(ema.ema_model.state_dict().values(),
                                                 ema2.ema_model.state_dict().values()))


def test_more_epochs_extend_a_complete_stage(tmp_path, config, single_thread):
    _, _, _, ckpt, trainer = make_stage(tmp_path, config)
    run_stage("noise", trainer, ckpt)
    _, opt, _, ckpt2, trainer2 = make_stage(tmp_path, config, epochs=3)
    assert run_stage("noise", trainer2, ckpt2) == 9
    assert adam_steps(opt) == {9}


def test_mismatched_checkpoint_names_the_file_and_the_fix(tmp_path, config, single_thread):
    _, _, _, ckpt, trainer = make_stage(tmp_path, config)
    run_stage("noise", trainer, ckpt)
    other = ModelConfig(preset="tiny")
    _, _, _, ckpt2, trainer2 = make_stage(tmp_path, other)
    with pytest.raises(ValueError, match="noise_checkpoint.pt.*delete the file"):
        run_stage("noise", trainer2, ckpt2)


def test_corrupt_checkpoint_raises_value_error(tmp_path, config):
    _, _, _, ckpt, _ = make_stage(tmp_path, config)
    ckpt.path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable noise checkpoint"):
        ckpt.read()


def test_export_writes_ema_weights_that_load_into_the_configured_network(tmp_path, config, single_thread, caplog):
    net, _, ema, ckpt, trainer = make_stage(tmp_path, config)
    run_stage("noise", trainer, ckpt)
    with caplog.at_level(logging.WARNING, logger="drdd_med.workflows.stages"):
        weights = export_model(config, tmp_path / "models", [ckpt.path, tmp_path / "missing.pt"])
    assert "residual network has not been trained" in caplog.text
    assert ModelConfig.load(tmp_path / "models" / "model_config.json") == config
    loaded = load_weights(config.build_network(), weights)
    for (name, value), ema_value in zip(loaded.noise_net.state_dict().items(),
                                        ema.ema_model.module.state_dict().values()):
        assert torch.equal(value, ema_value), name
    assert not all(torch.equal(a, b) for a, b in zip(loaded.noise_net.parameters(), net.noise_net.parameters()))


def test_export_without_any_checkpoint_raises(tmp_path, config):
    with pytest.raises(ValueError, match="train the bundle first"):
        export_model(config, tmp_path, [tmp_path / "noise_checkpoint.pt"])


def test_ema_network_shares_the_ema_modules(config):
    net = config.build_network()
    noise_ema, residual_ema = ModelEMA(net.noise_net), ModelEMA(net.residual_net)
    ema_net = ema_network(net, noise_ema, residual_ema)
    assert ema_net.noise_net is noise_ema.ema_model.module and ema_net.residual_net is residual_ema.ema_model.module
    assert ema_net.divisor == net.divisor and float(ema_net.noise_level) == float(net.noise_level)
    with torch.no_grad():
        next(net.noise_net.parameters()).add_(1.0)
    noise_ema()
    assert torch.equal(next(ema_net.noise_net.parameters()), next(net.noise_net.parameters()))


def test_checkpoint_interval_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="interval"):
        StageCheckpoint(tmp_path / "x.pt", {}, interval=0)


def test_checkpoint_and_model_are_written_0o644_with_umask_022(tmp_path, config, single_thread):
    old = os.umask(0o022)
    try:
        _, _, _, ckpt, trainer = make_stage(tmp_path, config)
        run_stage("noise", trainer, ckpt)
        weights = export_model(config, tmp_path / "models", [ckpt.path])
    finally:
        os.umask(old)
    for path in (ckpt.path, weights, tmp_path / "models" / "model_config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, config, single_thread, monkeypatch):
    _, _, _, ckpt, trainer = make_stage(tmp_path, config)  # saves at iterations 2, 4, 6
    real_save = torch.save

    def save_fails_after_iteration_2(obj, f, *args, **kwargs):
        if obj["trainer"]["iteration"] > 2:
            if hasattr(f, "write"):  # a file object or a path
                f.write(b"half a")
            else:
                Path(f).write_bytes(b"half a")
            raise OSError("disk full")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_fails_after_iteration_2)
    with pytest.raises(OSError, match="disk full"):
        run_stage("noise", trainer, ckpt)
    monkeypatch.setattr(torch, "save", real_save)
    state = ckpt.read()
    assert state is not None, "the failed save removed the previous checkpoint"
    assert state["trainer"]["iteration"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["noise_checkpoint.pt"], "temporary files left behind"
