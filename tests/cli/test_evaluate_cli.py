"""``drdd-med evaluate`` on a tiny phantom spec with a tiny untrained bundle: table, files, baselines."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from drdd_med.cli.main import main
from drdd_med.data.phantom.generate import write_phantom_dataset
from drdd_med.workflows.evaluate import case_metrics, load_volume
from drdd_med.workflows.model_config import ModelConfig, save_model
from drdd_med.workflows.predictor import SCTPredictor


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    spec = write_phantom_dataset(root / "phantom", subjects=3, unpaired=0, shape=(20, 20, 8))
    torch.manual_seed(0)
    config = ModelConfig(preset="tiny")
    save_model(config.build_network(), config, root / "bundle")
    return spec, root / "bundle"


def test_evaluate_prints_table_and_writes_metrics(tmp_path, capsys, setup):
    spec, bundle = setup
    code = main(["evaluate", "--spec", str(spec), "--bundle", str(bundle), "--out", str(tmp_path), "--device", "cpu"])
    stdout = capsys.readouterr().out
    assert code == 0
    for name in ("| model |", "| water |", "| linear |", "| oracle |", "mae"):
        assert name in stdout
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["num_cases"] == 1 and set(saved["baselines"]) == {"water", "linear", "oracle"}
    # the same numbers as scoring the predictor's output directly
    case = json.loads(spec.read_text())["test"][0]
    sct = SCTPredictor.from_bundle(bundle, device="cpu").predict(spec.parent / case["source"]).hu[0].numpy()
    ct, mask = (load_volume(spec.parent / case[k])[0] for k in ("target", "mask"))
    expected = case_metrics(ct, sct, mask)
    assert saved["cases"][0]["mae"] == pytest.approx(expected["mae"], rel=1e-9) and expected["mae"] > 0
    assert saved["model"]["ssim_2023"] == pytest.approx(expected["ssim_2023"], rel=1e-9)
    rows = {(r["method"], r["case"]): r for r in csv.DictReader((tmp_path / "metrics.csv").open())}
    assert float(rows[("model", "mean")]["mae"]) == pytest.approx(saved["model"]["mae"], rel=1e-5)
    assert (tmp_path / "montages").is_dir() and len(list((tmp_path / "montages").glob("*.png"))) == 1


def test_evaluate_without_trained_bundle_exits_2(tmp_path, capsys, setup):
    spec, bundle = setup
    code = main(["evaluate", "--spec", str(spec), "--split", "training", "--bundle", str(tmp_path / "none"),
                 "--out", str(tmp_path)])
    assert code == 2 and "Train the bundle first" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "problem"), [(["--samples", "0"], "expected an integer >= 1"),
                                                 (["--steps", "0,2"], "the residual stage needs at least one step"),
                                                 (["--noise-correlation", "1.5"], "expected a number in [0, 1]")])
def test_evaluate_refuses_bad_sampling_options_before_loading(tmp_path, capsys, option, problem):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--spec", str(tmp_path / "none.json"), "--out", str(tmp_path), *option])
    assert exc.value.code == 2 and problem in capsys.readouterr().err
