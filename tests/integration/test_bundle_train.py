"""The README's command path end to end: train both stages -> model.pt -> inference NIfTI -> evaluation metrics."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cli import BUNDLE, TINY, TRAIN, recomputed_maes, run_bundle
from monai.bundle import ConfigWorkflow

from drdd_med.keys import HU_MAX, HU_MIN
from drdd_med.workflows.model_config import ModelConfig, load_weights

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bundle root trained with `python -m monai.bundle run training --config_file bundles/drdd/train.json`."""
    root = tmp_path_factory.mktemp("bundle")
    log = run_bundle("run", "training", "--config_file", TRAIN, "--bundle_root", str(root), *TINY).stdout
    return root, log


def test_training_runs_both_stages_and_writes_every_output(trained):
    root, log = trained
    assert "creating the phantom dataset" in log
    assert log.index("training noise stage: 4 iterations") < log.index("training residual stage: 4 iterations")
    assert "noise: iteration 2/4 (50%)" in log and "ETA" in log
    for stage in ("noise", "residual"):
        state = torch.load(root / "models" / f"{stage}_checkpoint.pt", weights_only=True)
        assert state["trainer"]["iteration"] == 4
        assert int(state[f"{stage}_ema"]["n_averaged"]) == 4
        assert list((root / "runs" / stage).glob("events.out.tfevents.*")), stage
    assert "val_mae_hu" in log  # the in-training evaluator ran with full sampling
    config = ModelConfig.load(root / "models" / "model_config.json")
    assert (config.mode, config.preset, config.residual_steps, config.noise_steps) == ("2d", "tiny", 1, 2)
    assert config.residual_train_timesteps == "sampler"
    load_weights(config.build_network(), root / "models" / "model.pt")  # strict, weights_only
    report = json.loads((root / "eval" / "validation" / "metrics.json").read_text())
    assert set(report["baselines"]) == {"water", "linear", "oracle"} and report["num_cases"] == 1
    assert [c["mae"] for c in report["cases"]] == pytest.approx(recomputed_maes(root, report), abs=0.5)
    assert list((root / "eval" / "validation" / "montages").glob("*.png"))


def test_rerun_of_a_finished_training_skips_both_stages(trained):
    root, _ = trained
    before = {p.name: p.stat().st_mtime_ns for p in (root / "models").glob("*_checkpoint.pt")}
    log = run_bundle("run", "training", "--config_file", TRAIN, "--bundle_root", str(root), *TINY).stdout
    assert "noise stage is complete (iteration 4 of 4" in log
    assert "residual stage is complete (iteration 4 of 4" in log
    assert "training noise stage" not in log and "val_mae_hu" not in log
    assert {p.name: p.stat().st_mtime_ns for p in (root / "models").glob("*_checkpoint.pt")} == before


def test_workflows_expose_the_standard_properties(trained):
    root, _ = trained
    source = sorted((root / "data" / "phantom").glob("s*/mr.nii.gz"))[-1]
    for name, kind, extra in (("train.json", "train", {}), ("inference.json", "infer", {"input": str(source)})):
        overrides = {"phantom#subjects": 4, "phantom#unpaired": 2, "phantom#shape": [32, 32, 16],
                     "phantom#spacing_mm": [6.6, 6.6, 10.5], "network_preset": "tiny"} if kind == "train" else {}
        wf = ConfigWorkflow(config_file=str(BUNDLE / name), workflow_type=kind, logging_file=False,
                            bundle_root=str(root), **overrides, **extra)
        wf.initialize()
        assert wf.check_properties() == [], name


def test_inference_writes_hu_on_the_source_grid(trained, tmp_path):
    root, _ = trained
    source = sorted((root / "data" / "phantom").glob("s*/mr.nii.gz"))[-1]
    out = tmp_path / "out"
    run_bundle("run", "--config_file", "bundles/drdd/inference.json", "--bundle_root", str(root),
               "--input", str(source), "--output_dir", str(out))
    sct, mr = nib.load(out / "mr_sct.nii.gz"), nib.load(source)
    assert sct.shape == mr.shape
    np.testing.assert_allclose(sct.affine, mr.affine, atol=1e-4)
    assert sct.get_data_dtype() == np.int16
    values = np.asanyarray(sct.dataobj)
    assert HU_MIN <= values.min() and values.max() <= HU_MAX


def test_evaluate_writes_per_case_and_mean_metrics(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "eval"
    run_bundle("run", "--config_file", "bundles/drdd/evaluate.json", "--bundle_root", str(root),
               "--output_dir", str(out), "--montage", "False")
    result = json.loads((out / "metrics.json").read_text())
    assert result["num_cases"] == 1 and result["cases"][0]["case"] == "phantom_003"  # the phantom's test split
    assert {"mae", "psnr_2023", "ssim_2023", "psnr_2025", "ms_ssim_2025"} <= set(result["model"])
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("method,case,mae") and any(r.startswith("model,mean,") for r in rows)
    assert any(r.startswith("water,phantom_003,") for r in rows) and any(r.startswith("linear,") for r in rows)


def test_bad_datalist_fails_before_training_listing_every_problem(tmp_path):
    import subprocess

    from bundle_cli import REPO, bundle_command, env

    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"training": [{"source": "missing_mr.nii.gz", "target": "missing_ct.nii.gz"}],
                                "validation": [{"source": "x.nii.gz", "label": "y.nii.gz"}]}))
    result = subprocess.run(bundle_command("run", "training", "--config_file", TRAIN, "--bundle_root", str(tmp_path),
                                           "--datalist", str(spec), *TINY), cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert result.returncode != 0
    for problem in ("training[0].source", "training[0].target", "validation[0]: missing required key 'target'",
                    "validation[0]: unexpected key 'label'"):
        assert problem in result.stdout, problem
    assert "training noise stage" not in result.stdout and not (tmp_path / "models").exists()


def test_separate_stage_run_ids_train_one_stage_each(tmp_path):
    """``train_noise`` trains only the noise stage; ``train_residual`` then trains the residual stage and exports a
    model whose noise network is the one ``train_noise`` wrote."""
    run_bundle("run", "train_noise", "--config_file", TRAIN, "--bundle_root", str(tmp_path), *TINY)
    models = tmp_path / "models"
    assert sorted(p.name for p in models.glob("*_checkpoint.pt")) == ["noise_checkpoint.pt"]
    noise_ema = torch.load(models / "noise_checkpoint.pt", weights_only=True)["noise_ema"]
    log = run_bundle("run", "train_residual", "--config_file", TRAIN, "--bundle_root", str(tmp_path), *TINY).stdout
    assert "training noise stage" not in log and "training residual stage: 4 iterations" in log
    assert sorted(p.name for p in models.glob("*_checkpoint.pt")) == ["noise_checkpoint.pt", "residual_checkpoint.pt"]
    config = ModelConfig.load(models / "model_config.json")
    net = load_weights(config.build_network(), models / "model.pt")
    averaged = {k.removeprefix("module."): v for k, v in noise_ema.items() if k.startswith("module.")}
    exported = net.noise_net.state_dict()
    assert averaged and set(averaged) == set(exported)
    for name, value in exported.items():
        assert torch.equal(value, averaged[name]), name


def test_one_absolute_sigma_prior_serves_residual_stages_at_two_noise_levels(tmp_path):
    """``train_noise`` once with ``noise_time_input=absolute`` over σ ≤ 1 (MR-blind, CT only); ``train_residual`` at
    σ_n 0.2 and 0.5 each reuse that prior: both exported models carry its weights and the absolute-σ settings."""
    prior = ["--noise_conditioned", "False", "--noise_time_input", "absolute", "--noise_sigma_max", "1.0"]
    first = tmp_path / "level02"
    run_bundle("run", "train_noise", "--config_file", TRAIN, "--bundle_root", str(first), "--noise_level", "1.0",
               *prior, *TINY)
    second = tmp_path / "level05"
    (second / "models").mkdir(parents=True)
    shutil.copy2(first / "models" / "noise_checkpoint.pt", second / "models")
    shutil.copytree(first / "data", second / "data")
    exported = []
    for root, level in ((first, 0.2), (second, 0.5)):
        run_bundle("run", "train_residual", "--config_file", TRAIN, "--bundle_root", str(root), "--noise_level",
                   str(level), *prior, *TINY)
        config = ModelConfig.load(root / "models" / "model_config.json")
        assert (config.noise_level, config.noise_time_input, config.noise_sigma_max) == (level, "absolute", 1.0)
        assert config.build_scheduler().time_input_noise(999).item() == pytest.approx(1000 * level, rel=1e-4)
        exported.append(load_weights(config.build_network(), root / "models" / "model.pt").noise_net.state_dict())
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[0])
