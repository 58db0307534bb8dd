"""ModelConfig: serialisation round trips, validation messages, and rebuilding network / scheduler / inferer."""

from __future__ import annotations

import json

import pytest
import torch

from drdd_med.workflows.model_config import MODEL_CONFIG_NAME, ModelConfig, load_weights, model_paths, save_model


def test_round_trip_through_bundle_folder_and_json_path(tmp_path):
    config = ModelConfig(mode="2.5d", num_slices=3, preset="tiny", network_overrides={"channels": [8, 16]},
                         noise_level=1.5, roi_size=[32, 32, 16], model_version="drdd-test")
    written = config.save(tmp_path / "bundle")
    assert written == tmp_path / "bundle" / "models" / MODEL_CONFIG_NAME
    assert ModelConfig.load(tmp_path / "bundle") == config
    assert ModelConfig.load(written) == config
    assert ModelConfig.from_dict(json.loads(written.read_text())) == config
    assert not [p for p in written.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_unknown_keys_are_listed():
    data = ModelConfig().to_dict() | {"noise_levle": 1.0, "presets": "tiny"}
    with pytest.raises(ValueError, match=r"\['noise_levle', 'presets'\]"):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize("kwargs,message", [
    ({"mode": "4d"}, "mode"),
    ({"mode": "2.5d", "num_slices": 2}, "odd"),
    ({"mode": "2d", "num_slices": 3}, "2.5d"),
    ({"residual_steps": 0, "noise_steps": 0}, "residual_steps=0: the residual stage needs at least one step"),
    ({"residual_steps": 0, "noise_steps": 4}, "residual_steps=0: the residual stage needs at least one step"),
    ({"residual_steps": 2, "noise_steps": -1}, "noise_steps=-1"),
    ({"residual_steps": 501, "num_train_timesteps": 500}, "at most T=500"),
    ({"target_normalize": {"type": "percentile"}}, "range"),
])
def test_invalid_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_missing_config_tells_user_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="Train the bundle first"):
        ModelConfig.load(tmp_path)
    (tmp_path / "models").mkdir()
    model_paths(tmp_path)[0].write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig.load(tmp_path)


def test_2p5d_network_sees_the_slice_stack():
    config = ModelConfig(mode="2.5d", num_slices=5, preset="tiny")
    assert (config.spatial_dims, config.network_source_channels) == (2, 5)
    net = config.build_network()
    assert net.residual_net.in_channels == 1 + 5 and net.noise_net.in_channels == 1
    assert ModelConfig(mode="3d", preset="tiny").build_network().residual_net.conv_in.spatial_dims == 3


def test_scheduler_and_inferer_follow_the_config():
    config = ModelConfig(noise_level=2.0, residual_schedule="code", num_train_timesteps=500, residual_steps=3,
                         noise_steps=1, mode="3d", roi_size=[16, 16, 8])
    sched = config.build_scheduler()
    assert (sched.noise_level, sched.residual_schedule, sched.num_train_timesteps) == (2.0, "code", 500)
    inferer = config.build_inferer(noise_steps=None, seed=5, slice_batch=4)
    assert (inferer.residual_steps, inferer.noise_steps, inferer.seed) == (3, 1, 5)
    assert (inferer.mode, inferer.roi_size, inferer.slice_batch) == ("3d", (16, 16, 8), 4)
    assert config.build_network().noise_level.item() == 2.0  # the network stores the level it is trained at


def test_saved_weights_reload_identically_also_from_ema_wrappers(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(preset="tiny")
    net = config.build_network()
    save_model(net, config, tmp_path)
    x, s, t = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8), torch.tensor([10.0])
    reloaded = load_weights(config.build_network(), tmp_path)
    assert torch.equal(reloaded.predict_residual(x, s, t), net.predict_residual(x, s, t))
    # an AveragedModel-style EMA checkpoint: {"ema": {"module.<key>": ..., "n_averaged": ...}}
    ema = {"ema": {"module." + k: v for k, v in net.state_dict().items()} | {"n_averaged": torch.tensor(3)}}
    torch.save(ema, tmp_path / "ema.pt")
    assert torch.equal(load_weights(config.build_network(), tmp_path / "ema.pt").predict_noise(x, None, t),
                       net.predict_noise(x, None, t))


def test_weights_of_another_architecture_are_rejected(tmp_path):
    save_model(ModelConfig(preset="tiny").build_network(), ModelConfig(preset="tiny"), tmp_path)
    with pytest.raises(ValueError, match="do not fit the network"):
        load_weights(ModelConfig(preset="tiny", mode="2.5d", num_slices=3).build_network(), tmp_path)
    with pytest.raises(FileNotFoundError, match="no trained weights"):
        load_weights(ModelConfig(preset="tiny").build_network(), tmp_path / "elsewhere")


def test_a_string_boolean_from_the_command_line_is_refused_at_construction():
    """``--noise_conditioned false`` reaches the config as the truthy string 'false': refuse it before training."""
    with pytest.raises(ValueError, match=r"noise_conditioned='false'.*--noise_conditioned True"):
        ModelConfig(noise_conditioned="false")
    assert ModelConfig(roi_size=(32, 32, 32)).roi_size == [32, 32, 32]  # tuples from Python callers stay welcome


def test_noise_time_input_settings_round_trip_and_are_checked():
    config = ModelConfig(noise_level=0.2, noise_time_input="absolute", noise_sigma_max=1.0)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    sched = config.build_scheduler()
    assert (sched.noise_time_input, sched.noise_sigma_max) == ("absolute", 1.0)
    assert ModelConfig.from_dict({"noise_level": 0.2}).noise_time_input == "level"  # configs written before it
    with pytest.raises(ValueError, match="below noise_level"):
        ModelConfig(noise_level=0.5, noise_time_input="absolute", noise_sigma_max=0.2)
    with pytest.raises(ValueError, match="needs noise_time_input='absolute'"):
        ModelConfig(noise_level=0.2, noise_sigma_max=1.0)
    with pytest.raises(ValueError, match="expected a number or null"):
        ModelConfig(noise_time_input="absolute", noise_sigma_max="1.0")


def test_a_sampler_trained_residual_net_samples_only_with_its_step_count():
    config = ModelConfig(residual_steps=2, residual_train_timesteps="sampler")
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ModelConfig.from_dict({}).residual_train_timesteps == "uniform"  # configs written before it
    assert config.build_inferer().residual_steps == 2
    assert config.build_inferer(residual_steps=2, noise_steps=4).noise_steps == 4  # the noise stage is untouched
    with pytest.raises(ValueError, match="trained only at the timesteps of 2 residual step"):
        config.build_inferer(residual_steps=4)
    assert ModelConfig().build_inferer(residual_steps=4).residual_steps == 4  # uniform training serves any count
    with pytest.raises(ValueError, match="residual_train_timesteps='grid' must be one of"):
        ModelConfig(residual_train_timesteps="grid")


def test_noise_prediction_round_trips_into_the_scheduler_and_is_checked():
    config = ModelConfig(noise_level=0.2, noise_prediction="sample")
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.build_scheduler().noise_prediction == "sample"
    assert config.build_inferer().scheduler.noise_prediction == "sample"  # what translate samples with
    assert ModelConfig.from_dict({}).noise_prediction == "epsilon"  # configs written before it: the paper's ε
    with pytest.raises(ValueError, match="noise_prediction must be one of"):
        ModelConfig(noise_prediction="x0")


def test_residual_prediction_round_trips_into_the_network_and_is_checked(tmp_path):
    config = ModelConfig(preset="tiny", residual_prediction="sample")
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    save_model(config.build_network(), config, tmp_path)
    loaded = ModelConfig.load(tmp_path)  # what translate builds its network from
    assert load_weights(loaded.build_network(), tmp_path).residual_prediction == "sample"
    assert ModelConfig.from_dict({}).residual_prediction == "residual"  # configs written before it: the paper's
    with pytest.raises(ValueError, match="residual_prediction="):
        ModelConfig(residual_prediction="x0")
