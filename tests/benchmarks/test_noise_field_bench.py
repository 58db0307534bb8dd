"""``benchmarks/noise_field.py`` on a tiny untrained bundle and phantom: every row is what the shipped predictor with
that noise field scores, the fields differ where they should, and the table and picture are written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from drdd_med.data.phantom.generate import write_phantom_dataset
from drdd_med.data.spec import load_spec
from drdd_med.workflows.predictor import SCTPredictor
from drdd_med.workflows.report import evaluate_predictor

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "noise_field.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_tiny_bundle):
    base = tmp_path_factory.mktemp("noise_field")
    spec = write_phantom_dataset(base / "phantom", subjects=4, unpaired=0, shape=(24, 24, 10))
    bundle = make_tiny_bundle(seed=3)
    regression = make_tiny_bundle(seed=5, method="regression")
    cmd = [sys.executable, str(SCRIPT), "--bundles", str(bundle), "--correlations", "0", "0.5", "1",
           "--splits", "validation", "--spec", str(spec), "--references", str(regression), "--threads", "1",
           "--out", str(base / "out"), "--work", str(base / "work")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return spec, bundle, base / "out", json.loads((base / "out" / "noise_field.json").read_text())


def test_rows_are_the_shipped_predictor_scored_by_the_one_scorer(run, tmp_path):
    spec, bundle, _, result = run
    rows = {r["rho"]: r for r in result["rows"].values()}
    assert sorted(rows) == [0.0, 0.5, 1.0]
    assert [rows[r]["noise_field"] for r in (0.0, 0.5, 1.0)] == ["independent", "correlated", "shared"]
    predictor = SCTPredictor.from_bundle(bundle, device="cpu", noise_field="correlated", noise_correlation=0.5)
    expected = evaluate_predictor(predictor, load_spec(spec), tmp_path, "validation", baselines=False,
                                  montage=False)["model"]
    assert rows[0.5]["mae"] == pytest.approx(expected["mae"], rel=1e-9)
    assert rows[0.5]["stripe_ratio"] == pytest.approx(expected["stripe_ratio"], rel=1e-9)
    # the shared field changes least between slices, independent noise most
    tp = [rows[r]["through_plane_ratio"] for r in (1.0, 0.5, 0.0)]
    assert tp[0] < tp[1] < tp[2]
    assert result["summary"]["0.5"]["mae"] == pytest.approx(rows[0.5]["mae"])  # one bundle, one split


def test_regression_and_the_trivial_baselines_stand_beside_the_fields(run):
    _, _, out, result = run
    refs = result["references"]
    assert {name for name in refs if name.startswith("regression: ")} and {"water", "linear", "oracle"} <= set(refs)
    assert refs["water"]["mae"] > 0 and refs["oracle"]["mae"] < refs["water"]["mae"]
    text = (out / "noise_field.md").read_text()
    assert "| *water* |" in text and "| *regression: " in text


def test_table_and_picture_are_written(run):
    _, _, out, _ = run
    text = (out / "noise_field.md").read_text()
    assert "| correlated, rho 0.5 |" in text and "| shared |" in text and "| independent |" in text
    assert (out / "noise_field.png").stat().st_size > 10_000


def test_a_folder_without_a_model_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--bundles", str(tmp_path), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no trained model" in proc.stderr


def test_samples_add_the_std_maps_calibration(tmp_path, make_tiny_bundle):
    spec = write_phantom_dataset(tmp_path / "phantom", subjects=4, unpaired=0, shape=(24, 24, 10))
    cmd = [sys.executable, str(SCRIPT), "--bundles", str(make_tiny_bundle(seed=4)), "--correlations", "0.5",
           "--splits", "validation", "--spec", str(spec), "--samples", "2", "--name", "n2", "--threads", "1",
           "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (row,) = json.loads((tmp_path / "out" / "n2.json").read_text())["rows"].values()
    assert row["samples"] == 2 and -1.0 <= row["spearman"] <= 1.0 and row["top_error"] >= 0
    assert "Spearman" in (tmp_path / "out" / "n2.md").read_text() and (tmp_path / "out" / "n2.png").is_file()
