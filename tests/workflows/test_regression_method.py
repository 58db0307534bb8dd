"""Direct regression as a method of the bundle: ModelConfig, stage training and export, SCTPredictor, translate CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.engines import SupervisedTrainer

from drdd_med.cli.main import main
from drdd_med.engines import ModelEMA, RegressionPrepareBatch
from drdd_med.engines.stage_inferers import RegressionStageInferer
from drdd_med.networks import DRDDNet, RegressionNet
from drdd_med.networks.factory import PRESETS
from drdd_med.slicer_support.progress import parse_progress
from drdd_med.workflows.model_config import MODEL_CONFIG_NAME, ModelConfig, load_weights, save_model
from drdd_med.workflows.predictor import SCTPredictor
from drdd_med.workflows.stages import StageCheckpoint, export_model, run_stage

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "drdd"
AFFINE = np.array([[-1.1, 0, 0, 14.0], [0, 0.9, 0, -6.0], [0, 0, 2.5, 3.0], [0, 0, 0, 1]])


pytestmark = pytest.mark.usefixtures("single_thread")


def perturbed(network: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A fresh U-Net predicts 0 everywhere (its last conv is zeroed); perturb the weights for a non-trivial output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return network


@pytest.fixture(scope="module")
def regression_bundle(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("regression_bundle")
    config = ModelConfig(method="regression", preset="tiny", model_version="regression-test-1")
    save_model(perturbed(config.build_network()), config, root)
    return root


@pytest.fixture()
def mr_nifti(tmp_path) -> Path:
    mr = np.random.default_rng(2).gamma(2.0, 100.0, size=(13, 11, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(mr, AFFINE), tmp_path / "case1.nii.gz")
    return tmp_path / "case1.nii.gz"


# ------------------------------------------------------------------ ModelConfig
def test_method_round_trips_and_old_configs_load_as_drdd(tmp_path):
    config = ModelConfig(method="regression", mode="2.5d", num_slices=3, preset="tiny", model_version="r-1")
    written = config.save(tmp_path / "bundle")
    assert json.loads(written.read_text())["method"] == "regression"
    assert ModelConfig.load(tmp_path / "bundle") == config

    old = ModelConfig(preset="tiny").to_dict()
    del old["method"]  # a model_config.json written before the key existed
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert ModelConfig.load(tmp_path / "old.json").method == "drdd"
    assert isinstance(ModelConfig.load(tmp_path / "old.json").build_network(), DRDDNet)


def test_unknown_method_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"method='regresion' must be one of \['drdd', 'regression'\]"):
        ModelConfig(method="regresion")
    with pytest.raises(ValueError, match="wrong type"):
        ModelConfig.from_dict({"method": 1})


def test_regression_network_is_the_presets_residual_architecture():
    config = ModelConfig(method="regression", mode="2.5d", num_slices=3, preset="tiny")
    net = config.build_network()
    assert isinstance(net, RegressionNet)
    assert (net.net.in_channels, net.net.out_channels, net.source_channels) == (3, 1, 3)  # 2.5D stack in, CT out
    assert tuple(net.net.block_out_channels) == tuple(PRESETS["tiny"]["residual"]["channels"])
    assert ModelConfig(method="regression", mode="3d", preset="tiny").build_network().net.conv_in.spatial_dims == 3


def test_regression_inferer_refuses_samples_and_steps_but_takes_volume_options():
    config = ModelConfig(method="regression", preset="tiny")
    inferer = config.build_inferer(residual_steps=None, noise_steps=None, num_samples=1, seed=0, slice_batch=4,
                                   precision="bf16")
    assert (inferer.slice_batch, inferer.precision, inferer.residual_steps + inferer.noise_steps) == (4, "bf16", 0)
    with pytest.raises(ValueError, match="deterministic"):
        config.build_inferer(num_samples=2)
    with pytest.raises(ValueError, match="no sampling steps"):
        config.build_inferer(residual_steps=2, noise_steps=2)


# ------------------------------------------------------------------ bundle config
def test_train_json_has_the_method_override_and_a_regression_run_id():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "train.json"))
    assert parser["method"] == "drdd" and parser["model_config#method"] == "@method"
    # what train_regression trains, exports and refuses is checked by running it: tests/integration/test_bundle_regression.py
    readme = (BUNDLE / "docs" / "README.md").read_text()
    assert "`--method drdd\\|regression`" in readme and "## Regression" in readme and "drdd-med evaluate" in readme


# ------------------------------------------------------------------ training stage and export
def test_regression_stage_trains_resumes_and_exports_its_ema(tmp_path, caplog):
    config = ModelConfig(method="regression", preset="tiny")

    def stage():
        torch.manual_seed(0)
        net = config.build_network()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        ema = ModelEMA(net, decay=0.5)
        ckpt = StageCheckpoint(tmp_path / "regression_checkpoint.pt",
                               {"regression_net": net, "regression_optimizer": opt, "regression_ema": ema.ema_model},
                               interval=2)
        batch = {"source": torch.rand(2, 1, 16, 16) * 2 - 1, "target": torch.rand(2, 1, 16, 16) * 2 - 1}
        trainer = SupervisedTrainer(device="cpu", max_epochs=1, epoch_length=3, train_data_loader=[batch],
                                    network=net, optimizer=opt, loss_function=torch.nn.L1Loss(),
                                    prepare_batch=RegressionPrepareBatch(), inferer=RegressionStageInferer(),
                                    train_handlers=[ema])
        return net, ema, ckpt, trainer

    net, ema, ckpt, trainer = stage()
    assert run_stage("regression", trainer, ckpt) == 3
    weights = export_model(config, tmp_path, [tmp_path / "regression_checkpoint.pt"])
    exported = load_weights(ModelConfig.load(tmp_path / MODEL_CONFIG_NAME).build_network(), weights)
    assert isinstance(exported, RegressionNet) and ModelConfig.load(tmp_path / MODEL_CONFIG_NAME).method == "regression"
    ema_state, net_state = ema.ema_model.module.state_dict(), net.state_dict()
    assert all(torch.equal(v, ema_state[k]) for k, v in exported.state_dict().items())
    assert any(not torch.equal(v, net_state[k]) for k, v in exported.state_dict().items())  # EMA, not raw weights

    caplog.set_level("INFO")
    _, _, ckpt, trainer = stage()
    assert run_stage("regression", trainer, ckpt) == 3
    assert "regression stage is complete (iteration 3 of 3" in caplog.text
    with pytest.raises(ValueError, match="holds trained weights for a drdd model"):
        export_model(ModelConfig(preset="tiny"), tmp_path / "drdd", [tmp_path / "regression_checkpoint.pt"])


def test_training_inferer_autocasts_and_returns_float32():
    net = perturbed(ModelConfig(method="regression", preset="tiny").build_network())
    source = torch.rand(2, 1, 16, 16) * 2 - 1
    fp32 = RegressionStageInferer()(source, net)
    torch.testing.assert_close(fp32, net(source))
    bf16 = RegressionStageInferer(precision="bf16")(source, net)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32) and (bf16 - fp32).abs().max() < 0.05
    with pytest.raises(ValueError, match="divisible"):
        RegressionStageInferer()(torch.rand(1, 1, 15, 16), net)


# ------------------------------------------------------------------ inference: SCTPredictor and the translate CLI
def test_predictor_translates_a_nifti_onto_its_grid(tmp_path, regression_bundle, mr_nifti):
    predictor = SCTPredictor.from_bundle(regression_bundle, device="cpu")
    assert isinstance(predictor.network, RegressionNet) and predictor.steps == (0, 0)
    result = predictor.predict(mr_nifti)
    hu = result.hu[0].numpy()
    assert hu.shape == (13, 11, 5) and result.std_hu is None
    np.testing.assert_allclose(result.affine, AFFINE, atol=1e-5)
    assert -1024 <= hu.min() < hu.max() <= 3071 and np.unique(hu).size > 10  # a real, varying prediction
    written = nib.load(predictor.save_nifti(result, tmp_path / "out", "case1")[0])
    assert written.get_data_dtype() == np.int16 and written.shape == (13, 11, 5)
    np.testing.assert_allclose(written.affine, AFFINE, atol=1e-5)


def test_predictor_refuses_samples_for_a_regression_model(regression_bundle):
    with pytest.raises(ValueError, match="deterministic"):
        SCTPredictor.from_bundle(regression_bundle, device="cpu", num_samples=2)


def test_dicom_output_names_the_method_and_never_shares_uids_with_drdd(tmp_path, regression_bundle, mr_nifti):
    predictor = SCTPredictor.from_bundle(regression_bundle, device="cpu", seed=5)  # a seed changes nothing
    assert predictor.output_version == "regression-test-1+regression"
    files = predictor.save_dicom(predictor.predict(mr_nifti), tmp_path / "sct_dicom")
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert "by direct regression 2d (tiny), one network evaluation" in header.DerivationDescription
    assert header.SoftwareVersions[-1] == "model regression-test-1+regression"


def test_translate_cli_writes_the_input_grid_and_refuses_steps(tmp_path, capsys, regression_bundle, mr_nifti):
    out = tmp_path / "out"
    code = main(["translate", str(mr_nifti), "--bundle", str(regression_bundle), "--out", str(out), "--device",
                 "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    sct, mr = nib.load(out / "case1_sct.nii.gz"), nib.load(mr_nifti)
    assert sct.shape == mr.shape and sct.get_data_dtype() == np.int16
    np.testing.assert_allclose(sct.affine, mr.affine, atol=1e-6)
    events = [e for e in map(parse_progress, captured.out.splitlines()) if e is not None]
    assert events[-1].done == events[-1].total == 1  # one network evaluation per case

    code = main(["translate", str(mr_nifti), "--bundle", str(regression_bundle), "--out", str(out), "--device",
                 "cpu", "--steps", "2,2"])
    assert code == 2 and "no sampling steps" in capsys.readouterr().err
