"""evaluate_cases on a tiny phantom spec: perfect and offset predictors, hand-checked baselines, written files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from drdd_med import keys
from drdd_med.data.phantom.generate import write_phantom_dataset
from drdd_med.data.spec import load_spec
from drdd_med.workflows import evaluate
from drdd_med.workflows.evaluate import (
    METRIC_NAMES,
    axial_axis,
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


def _unit_mr(mr: np.ndarray) -> np.ndarray:
    """The MR's 0.5 / 99.5 percentile window mapped to [-1, 1] and clipped, in float64 numpy."""
    lo, hi = np.percentile(mr.astype(np.float64), [0.5, 99.5])
    return np.clip((mr - lo) / (hi - lo) * 2.0 - 1.0, -1.0, 1.0)


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
    # a constant offset changes nothing from slice to slice
    case = result["cases"][0]
    assert case["through_plane_sct"] == pytest.approx(case["through_plane_ct"], rel=1e-9)
    assert case["through_plane_ct"] > 0 and case["through_plane_ratio"] == pytest.approx(1.0, rel=1e-9)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert float(rows[0]["through_plane_ratio"]) == pytest.approx(1.0, rel=1e-5)


def test_through_plane_figures_follow_the_axial_axis_of_the_grid(spec, tmp_path):
    case = spec.items("test")[0]
    ct, affine = load_volume(case["target"])
    stripes = np.where(np.arange(ct.shape[2]) % 2 == 1, 50.0, 0.0)  # +50 HU on every other axial slice
    result = evaluate_cases([case], lambda s: _ct_of(s) + stripes, tmp_path, montage=False)["cases"][0]
    assert axial_axis(affine) == 2
    mask = load_volume(case["mask"])[0] > 0
    pairs = mask[:, :, 1:] & mask[:, :, :-1]
    sct = ct.astype(np.float64) + stripes
    assert result["through_plane_sct"] == pytest.approx(np.abs(np.diff(sct, axis=2))[pairs].mean(), rel=1e-9)
    assert result["through_plane_ratio"] > 1


def test_axial_axis_is_the_axis_closest_to_superior():
    assert axial_axis(np.diag([0.9, 0.9, 3.0, 1.0])) == 2
    # axis 0 runs superior with 0.5 mm voxels; axis 2 is 3 mm mostly anterior with a larger superior component
    affine = np.array([[0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.5, 0.0, 0.9, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert axial_axis(affine) == 0


def test_each_volume_of_a_case_is_read_once(spec, tmp_path, monkeypatch):
    baselines = {"water": constant_water_baseline(), "linear": fit_linear_baseline(spec.items("training"))}
    reads: list[str] = []
    real = evaluate.load_volume
    monkeypatch.setattr(evaluate, "load_volume", lambda path: reads.append(str(path)) or real(path))
    case = spec.items("test")[0]
    evaluate_cases([case], lambda s: real(Path(s).parent / "ct.nii.gz")[0], tmp_path, baselines=baselines)
    assert sorted(reads) == sorted(str(case[k]) for k in ("source", "target", "mask"))


def test_linear_baseline_is_the_least_squares_line(spec, tmp_path):
    train = spec.items("training")
    baseline = fit_linear_baseline(train)
    xs, ys = [], []
    for case in train:
        mr, ct, mask = (load_volume(case[k])[0] for k in ("source", "target", "mask"))
        xs.append(_unit_mr(mr)[mask > 0])
        ys.append(ct[mask > 0])
    slope, intercept = np.polyfit(np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64), 1)
    assert (baseline.slope, baseline.intercept) == pytest.approx((slope, intercept), rel=1e-6)
    result = evaluate_cases(spec.items("test"), _ct_of, tmp_path, baselines={"linear": baseline}, montage=False)
    maes = []
    for case in spec.items("test"):  # the line applied by hand, clipped to the HU window, MAE inside the body
        mr, ct, mask = (load_volume(case[k])[0] for k in ("source", "target", "mask"))
        hu = np.clip(slope * _unit_mr(mr) + intercept, keys.HU_MIN, keys.HU_MAX)
        maes.append(np.abs(hu - ct)[mask > 0].mean())
    assert result["baselines"]["linear"]["mae"] == pytest.approx(np.mean(maes), rel=1e-5)


def test_cases_without_target_are_rejected(spec, tmp_path):
    case = {"source": spec.items("test")[0]["source"]}
    with pytest.raises(ValueError, match="no target CT"):
        evaluate_cases([case], _ct_of, tmp_path)
    with pytest.raises(ValueError, match="at least one training pair"):
        fit_linear_baseline([case])
