"""The bundle's regression method end to end: one stage -> EMA model.pt -> validation report, resume, evaluate."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from bundle_cli import REPO, TINY, TRAIN, bundle_command, env, recomputed_maes, run_bundle

from drdd_med.cli.main import main
from drdd_med.networks import RegressionNet
from drdd_med.workflows.model_config import ModelConfig, load_weights

pytestmark = pytest.mark.slow

REGRESSION = ["--method", "regression", "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bundle root trained with `python -m monai.bundle run train_regression ... --method regression`."""
    root = tmp_path_factory.mktemp("regression_bundle")
    log = run_bundle("run", "train_regression", "--config_file", TRAIN, "--bundle_root", str(root), *TINY,
                     *REGRESSION).stdout
    return root, log


def test_one_regression_stage_trains_and_exports_its_ema(trained):
    root, log = trained
    assert "training regression stage: 4 iterations" in log and "regression: iteration 2/4 (50%)" in log
    assert "noise stage" not in log and "residual stage" not in log
    assert [p.name for p in (root / "models").glob("*_checkpoint.pt")] == ["regression_checkpoint.pt"]
    state = torch.load(root / "models" / "regression_checkpoint.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 4 and int(state["regression_ema"]["n_averaged"]) == 4
    assert list((root / "runs" / "regression").glob("events.out.tfevents.*"))

    config = ModelConfig.load(root / "models" / "model_config.json")
    assert (config.method, config.mode, config.preset) == ("regression", "2d", "tiny")
    assert isinstance(load_weights(config.build_network(), root / "models" / "model.pt"), RegressionNet)  # strict
    exported = torch.load(root / "models" / "model.pt", weights_only=True)
    ema = {k[len("module."):]: v for k, v in state["regression_ema"].items() if k.startswith("module.")}
    assert exported.keys() == ema.keys() and all(torch.equal(exported[k], ema[k]) for k in ema)
    assert any(not torch.equal(exported[k], state["regression_net"][k]) for k in ema)  # EMA, not the raw weights

    report = json.loads((root / "eval" / "validation" / "metrics.json").read_text())
    assert set(report["baselines"]) == {"water", "linear", "oracle"} and report["num_cases"] == 1
    assert [c["mae"] for c in report["cases"]] == pytest.approx(recomputed_maes(root, report), abs=0.05)
    assert "| model |" in log and "| linear |" in log


def test_rerun_skips_the_finished_regression_stage(trained):
    root, _ = trained
    checkpoint = root / "models" / "regression_checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    log = run_bundle("run", "train_regression", "--config_file", TRAIN, "--bundle_root", str(root), *TINY,
                     *REGRESSION).stdout
    assert "regression stage is complete (iteration 4 of 4" in log
    assert "training regression stage" not in log and "regression: iteration" not in log
    assert checkpoint.stat().st_mtime_ns == before


def test_evaluate_cli_scores_the_regression_bundle(trained, tmp_path, capsys):
    root, _ = trained
    code = main(["evaluate", "--spec", str(root / "data" / "phantom" / "phantom.json"), "--bundle", str(root),
                 "--out", str(tmp_path / "eval"), "--device", "cpu", "--no-montage"])
    assert code == 0 and "| model |" in capsys.readouterr().out
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    maes = recomputed_maes(root, report)
    assert [c["mae"] for c in report["cases"]] == pytest.approx(maes, abs=0.05)
    assert report["model"]["mae"] == pytest.approx(sum(maes) / len(maes), abs=0.05)


def test_train_regression_without_the_method_override_is_refused(tmp_path):
    result = subprocess.run(bundle_command("run", "train_regression", "--config_file", TRAIN, "--bundle_root",
                                           str(tmp_path), *TINY, "--threads", "1"),
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=600)
    assert result.returncode != 0
    assert "run id 'train_regression' trains a regression model but the bundle's method is 'drdd'; add --method " \
           "regression" in result.stdout
    assert not (tmp_path / "models").exists()
