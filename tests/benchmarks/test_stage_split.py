"""``benchmarks/stage_split.py`` on tiny untrained bundles: the full row is the shipped predictor's default, the
residual-only row is the residual network's estimate with the drawn noise removed exactly (so no seed moves it),
references and baselines stand beside them, and a regression model is refused as a DRDD bundle."""

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
SCRIPT = ROOT / "benchmarks" / "stage_split.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--threads", "1", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_tiny_bundle):
    base = tmp_path_factory.mktemp("stage_split")
    spec = write_phantom_dataset(base / "phantom", subjects=4, unpaired=0, shape=(24, 24, 10))
    bundle, regression = make_tiny_bundle(seed=3), make_tiny_bundle(seed=5, method="regression")
    proc = _run("--bundles", str(bundle), "--references", str(regression), "--splits", "validation",
                "--spec", str(spec), "--out", str(base / "out"), "--work", str(base / "work"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return spec, bundle, regression, base / "out", json.loads((base / "out" / "stage_split.json").read_text())


def _mae(bundle: Path, spec: Path, out: Path, **options) -> float:
    predictor = SCTPredictor.from_bundle(bundle, device="cpu", **options)
    return evaluate_predictor(predictor, load_spec(spec), out, "validation", baselines=False,
                              montage=False)["model"]["mae"]


def test_rows_are_the_shipped_predictor_with_and_without_the_noise_stage(run, tmp_path):
    spec, bundle, _, _, result = run
    full, alone = (result["rows"][f"{bundle}|{stage}|validation"] for stage in ("full", "residual_only"))
    assert full["mae"] == pytest.approx(_mae(bundle, spec, tmp_path / "a", seed=0), rel=1e-9)
    residual_steps, noise_steps = SCTPredictor.from_bundle(bundle, device="cpu").steps
    assert noise_steps > 0 and full["network_calls"] == residual_steps + noise_steps
    assert alone["network_calls"] == residual_steps
    assert alone["mae"] != pytest.approx(full["mae"], rel=1e-6)
    # the drawn noise is subtracted exactly: another seed gives the same residual-only sCT, not the same full one
    other = {"noise_steps": 0, "subtract_noise": True, "seed": 7}
    assert _mae(bundle, spec, tmp_path / "b", **other) == pytest.approx(alone["mae"], rel=1e-5)
    assert _mae(bundle, spec, tmp_path / "c", seed=7) != pytest.approx(full["mae"], rel=1e-6)


def test_references_and_baselines_are_scored_per_split_and_tabled(run):
    _, _, regression, out, result = run
    names = {r["name"] for r in result["references"].values()}
    assert f"regression: {regression.name}" in names and {"water", "linear", "oracle"} <= names
    text = (out / "stage_split.md").read_text()
    assert "| residual stage alone |" in text and f"| *regression: {regression.name}* | validation |" in text


def test_a_regression_model_is_refused_as_a_drdd_bundle(run, tmp_path):
    spec, _, regression, _, _ = run
    proc = _run("--bundles", str(regression), "--splits", "validation", "--spec", str(spec), "--out", str(tmp_path))
    assert proc.returncode == 2 and "has no stages" in proc.stderr
