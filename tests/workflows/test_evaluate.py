"""evaluate_cases on a tiny phantom spec: perfect and offset predictors, hand-checked baselines, written files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from drdd_med.data.phantom.generate import write_phantom_dataset
from drdd_med.data.spec import load_spec
from drdd_med.transforms.array import percentile_window, window_to_unit
from drdd_med.workflows.evaluate import (
    METRIC_NAMES,
    constant_water_baseline,
    evaluate_cases,
    fit_linear_baseline,
    format_table,
    load_volume,
)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    return load_spec(write_phantom_dataset(root / "ph", subjects=3, unpaired=0, shape=(24, 24, 12)))


def _ct_of(source: str) -> np.ndarray:
    return load_volume(Path(source).parent / "ct.nii.gz")[0]


def test_perfect_predictor_and_water_baseline(spec, tmp_path):
    cases = spec.items("test") + spec.items("validation")
    result = evaluate_cases(cases, _ct_of, tmp_path, baselines={"water": constant_water_baseline()})
    model = result["model"]
    assert model["mae"] == 0 and model["ssim_2023"] == pytest.approx(1) and model["ms_ssim_2025"] == pytest.approx(1)
    assert model["psnr_2025"] == np.inf and model["mean_error"] == 0
    water_mae = []
    for case in cases:  # hand computation: |CT - 0| inside the body mask
        ct, mask = load_volume(case["target"])[0], load_volume(case["mask"])[0] > 0
        water_mae.append(np.abs(ct[mask].astype(np.float64)).mean())
    assert [c["mae"] for c in result["baseline_cases"]["water"]] == pytest.approx(water_mae, rel=1e-9)
    assert result["baselines"]["water"]["mae"] == pytest.approx(np.mean(water_mae), rel=1e-9)

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["num_cases"] == 2 and saved["model"]["psnr_2025"] is None  # inf is not JSON: written as null
    assert [c["case"] for c in saved["cases"]] == [c["id"] for c in cases]
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [(r["method"], r["case"]) for r in rows] == [
        ("model", cases[0]["id"]), ("model", cases[1]["id"]), ("model", "mean"), ("model", "std"),
        ("water", cases[0]["id"]), ("water", cases[1]["id"]), ("water", "mean"), ("water", "std")]
    assert float(rows[4]["mae"]) == pytest.approx(water_mae[0], rel=1e-5)
    assert sorted(p.name for p in (tmp_path / "montages").iterdir()) == sorted(f"{c['id']}.png" for c in cases)
    assert (tmp_path / "montages" / f"{cases[0]['id']}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(result)
    assert "| model |" in table and "| water |" in table and "inf" in table


def test_offset_predictor_gives_hand_checked_errors(spec, tmp_path):
    result = evaluate_cases(spec.items("test"), lambda s: _ct_of(s)[None] + 100.0, tmp_path, montage=False)
    assert result["model"]["mae"] == pytest.approx(100) and result["model"]["mean_error"] == pytest.approx(100)
    assert set(result["cases"][0]) == {"case", *METRIC_NAMES} and not (tmp_path / "montages").exists()


def test_linear_baseline_is_the_least_squares_line(spec, tmp_path):
    train = spec.items("training")
    baseline = fit_linear_baseline(train)
    xs, ys = [], []
    for case in train:
        mr, ct, mask = (load_volume(case[k])[0] for k in ("source", "target", "mask"))
        xs.append(window_to_unit(mr, *percentile_window(mr))[mask > 0])
        ys.append(ct[mask > 0])
    slope, intercept = np.polyfit(np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64), 1)
    assert (baseline.slope, baseline.intercept) == pytest.approx((slope, intercept), rel=1e-6)
    result = evaluate_cases(spec.items("test"), _ct_of, tmp_path, baselines={"linear": baseline}, montage=False)
    assert result["baselines"]["linear"]["mae"] > 0


def test_cases_without_target_are_rejected(spec, tmp_path):
    case = {"source": spec.items("test")[0]["source"]}
    with pytest.raises(ValueError, match="no target CT"):
        evaluate_cases([case], _ct_of, tmp_path)
    with pytest.raises(ValueError, match="at least one training pair"):
        fit_linear_baseline([case])
