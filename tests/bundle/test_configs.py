"""The bundle's files: standard ids and run ids, the multi-GPU overlay, logging.conf, and metadata verification."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "drdd"
SCHEMA = Path(__file__).resolve().parent / "meta_schema.json"


def load(*names: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / n) for n in names])
    return parser


def test_bundle_has_the_model_zoo_files():
    for name in ("train.json", "inference.json", "evaluate.json", "multi_gpu_train.json", "metadata.json",
                 "logging.conf", "LICENSE", "docs/README.md", "docs/data_license.txt"):
        assert (BUNDLE / name).is_file(), name
    assert "Apache License" in (BUNDLE / "LICENSE").read_text()
    assert not (BUNDLE / "scripts").exists(), "code lives in the drdd_med package, not in the bundle"


@pytest.mark.parametrize("name, ids", [
    ("train.json", ["bundle_root", "device", "dataset_dir", "network_def", "train#trainer", "train#trainer#max_epochs",
                    "train#dataset", "train#inferer", "train#handlers", "validate#evaluator", "validate#dataset",
                    "validate#inferer", "val_interval", "noise#trainer", "joint#trainer", "output_dir", "datalist"]),
    ("inference.json", ["bundle_root", "device", "dataset_dir", "dataset", "evaluator", "network_def", "inferer",
                        "preprocessing", "postprocessing", "datalist", "output_dir", "input", "model_dir",
                        "residual_steps", "noise_steps", "num_samples", "seed", "precision", "threads"]),
    ("evaluate.json", ["bundle_root", "device", "dataset_dir", "datalist", "output_dir", "split", "run"]),
])
def test_standard_ids_are_present(name, ids):
    parser = load(name)
    missing = [i for i in ids if i not in parser]
    assert not missing, f"{name} lacks {missing}"


def test_run_ids_of_train_json():
    parser = load("train.json")
    assert parser["training"] == "%run"
    for run_id in ("run", "train_noise", "train_residual", "train_joint"):
        assert isinstance(parser[run_id], list) and parser[run_id], run_id
    # what each run id trains is checked by running them: tests/integration/test_bundle_train.py


def test_documented_overrides_are_top_level_ids():
    parser = load("train.json")
    for key in ("datalist", "bundle_root", "output_dir", "mode", "network_preset", "epochs", "epoch_length",
                "noise_epochs", "residual_epochs", "residual_steps", "noise_steps", "noise_level", "noise_conditioned",
                "device", "precision", "threads"):
        assert key in parser, key
    readme = (BUNDLE / "docs" / "README.md").read_text()
    for flag in ("--datalist", "--bundle_root", "--output_dir", "--mode", "--network_preset", "--epochs",
                 "--residual_steps", "--noise_steps", "--noise_level", "--noise_conditioned", "--device"):
        assert flag in readme, flag


@pytest.mark.parametrize("overrides, drawn", [
    ({}, (999,)),  # the default: one residual step, the residual net trained at its timestep only
    ({"residual_steps": 2}, (499, 999)),
    ({"residual_train_timesteps": "uniform", "residual_steps": 2}, None),  # the paper: every t
])
def test_residual_stage_trains_at_the_timesteps_its_sampler_visits(overrides, drawn):
    parser = load("train.json")
    parser["scheduler"] = "$drdd_med.DRDDScheduler(noise_level=@noise_level)"  # no data spec needed
    for key, value in overrides.items():
        parser[key] = value
    assert parser.get_parsed_content("train#prepare_batch").timesteps == drawn


@pytest.mark.parametrize("prediction, target", [("epsilon", "noise"), ("sample", "x0")])
def test_noise_prediction_sets_the_noise_stage_target_and_the_saved_model_config(prediction, target):
    parser = load("train.json")
    parser["noise_prediction"] = prediction
    parser["scheduler"] = "$drdd_med.DRDDScheduler(noise_level=@noise_level, noise_prediction=@noise_prediction)"
    batch = {"target": torch.rand(2, 1, 8, 8), "source": torch.rand(2, 1, 8, 8)}
    x0, got, _, kwargs = parser.get_parsed_content("noise#prepare_batch")(batch)
    assert torch.equal(got, x0 if target == "x0" else kwargs["noise"])
    assert parser["model_config"]["noise_prediction"] == "@noise_prediction"  # recorded in model_config.json


def test_multi_gpu_overlay_wraps_the_network_and_shards_both_stages():
    parser = load("train.json", "multi_gpu_train.json")
    assert parser["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    assert parser["network"]["find_unused_parameters"] is True  # each stage uses one of the two networks
    for stage in ("noise", "train"):
        assert parser[f"{stage}#sampler"]["_target_"] == "DistributedSampler"
        assert parser[f"{stage}#dataloader#sampler"] == f"@{stage}#sampler"
        assert parser[f"{stage}#dataloader#shuffle"] is False
    assert any("init_process_group" in e for e in parser["initialize"])
    assert any("destroy_process_group" in e for e in parser["finalize"])
    # rank-0-only side effects: every logger, TensorBoard writer and validation handler carries the rank guard
    for stage in ("noise", "train", "joint"):
        guarded = [h for h in parser[f"{stage}#handlers"] if h.get("_disabled_") == "@is_not_rank0"]
        targets = {h["_target_"] for h in guarded}
        assert {"drdd_med.workflows.progress.ProgressLogger", "TensorBoardStatsHandler"} <= targets, stage


def test_logging_conf_passes_monai_allow_list():
    ConfigWorkflow(config_file=str(BUNDLE / "train.json"), logging_file=str(BUNDLE / "logging.conf"),
                   meta_file=str(BUNDLE / "metadata.json"), workflow_type=None)


def test_verify_metadata_command_passes_offline():
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(BUNDLE / "metadata.json"),
         "--filepath", str(SCHEMA)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "metadata is verified with no error" in result.stdout + result.stderr


@pytest.mark.parametrize("breakage", ["drop_required", "bad_tensor"])
def test_schema_rejects_broken_metadata(tmp_path, breakage):
    meta = json.loads((BUNDLE / "metadata.json").read_text())
    if breakage == "drop_required":
        del meta["network_data_format"]
    else:
        meta["network_data_format"]["outputs"]["pred"]["num_channels"] = 0
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError):
        verify_metadata(meta_file=str(path), filepath=str(SCHEMA))


def test_metadata_describes_mr_in_and_hu_out():
    meta = json.loads((BUNDLE / "metadata.json").read_text())
    image = meta["network_data_format"]["inputs"]["image"]
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert (image["modality"], image["format"]) == ("MR", "magnitude")
    assert (pred["modality"], pred["format"]) == ("CT", "hounsfield")
    # deprecated in MONAI 1.6: when present it silently replaces required_packages_version
    assert "optional_packages_version" not in meta
