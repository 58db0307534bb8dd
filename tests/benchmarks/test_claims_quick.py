"""``benchmarks/claims.py --quick``: every section trains through the bundle and scores through SCTPredictor and
evaluate_predictor, and its numbers agree with independent computations on the files the run wrote."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "claims.py"
SECTIONS = {"harmonization", "methods", "samples", "steps", "noise_level", "data_efficiency", "budget"}

pytestmark = pytest.mark.slow


def _run(out: Path, work: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out), "--work", str(work), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    base = tmp_path_factory.mktemp("claims")
    out, work = base / "out", base / "work"
    proc = _run(out, work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, work, json.loads((out / "claims.json").read_text())


def _volume(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)


def _rows(state, section):
    return [state["rows"][key] for key in state["sections"][section]["rows"]]


def _row(state, section, method, **match):
    (row,) = [r for r in _rows(state, section) if r["method"] == method and all(r[k] == v for k, v in match.items())]
    return row


def _case_files(row, case):
    """The sCT and std NIfTI files the run wrote for one case of a row."""
    folder = Path(row["files"]) / "sct"
    return folder / f"{case['id']}_sct.nii.gz", folder / f"{case['id']}_sct_std.nii.gz"


def test_every_section_ran_and_each_training_ran_its_budget(quick):
    _, work, state = quick
    assert {s for s, v in state["sections"].items() if v["status"] == "done"} == SECTIONS
    assert state["meta"]["partial"] is False and state["meta"]["threads"] == 1
    assert len(state["meta"]["load_at_start"]) == 3
    expected = {"drdd_s0": {"noise": 4, "residual": 4}, "regression_s0": {"regression": 4},
                "drdd_joint_s0": {"joint": 4}, "drdd_s0_epochs2": {"noise": 8, "residual": 8},
                "drdd_uniform_s0": {"noise": 4, "residual": 4}, "drdd_mse_s0_epochs2": {"noise": 8, "residual": 8},
                "regression_s0_epochs2": {"regression": 8}, "drdd_s0_pairs50": {"noise": 4, "residual": 4},
                "drdd_blind_s0_pairs50": {"noise": 4, "residual": 4}}
    for name, iterations in expected.items():
        record = state["trainings"][name]
        models = work / "runs" / name / "models"
        files = {p.name.replace("_checkpoint.pt", ""): p for p in models.glob("*_checkpoint.pt")}
        assert {k: torch.load(p, weights_only=True)["trainer"]["iteration"] for k, p in files.items()} == iterations
        assert record["iterations"] == iterations
        assert 0 < record["train_seconds"] <= record["run_seconds"] and record["threads"] == 1
        assert len(record["load_before"]) == 3 and math.isfinite(record["validation"]["mae"])
    assert state["trainings"]["regression_s0"]["run_id"] == "train_regression"
    # the MR-blind denoiser is reused from the run on all CT; the default (MR-conditioned) one trains on the pairs
    assert state["trainings"]["drdd_blind_s0_pairs50"]["run_id"] == "train_residual"
    assert state["trainings"]["drdd_mrblind_s0_pairs50"]["run_id"] == "train_residual"
    assert state["trainings"]["drdd_mrblind_s0_pairs50"]["noise_stage_from"] == "drdd_mrblind_s0"
    assert state["trainings"]["drdd_s0_pairs50"]["run_id"] == "training"
    configs = {name: json.loads((work / "runs" / name / "models" / "model_config.json").read_text())
               for name in ("regression_s0", "drdd_blind_s0", "drdd_uniform_s0_noise_level0.5", "drdd_s0",
                            "drdd_uniform_s0")}
    assert configs["regression_s0"]["method"] == "regression" and configs["drdd_s0"]["method"] == "drdd"
    assert configs["drdd_blind_s0"]["noise_conditioned"] is False and configs["drdd_s0"]["noise_conditioned"] is True
    assert configs["drdd_uniform_s0_noise_level0.5"]["noise_level"] == 0.5 and configs["drdd_s0"]["noise_level"] == 0.2
    # the default trains its residual net at its one sampling step; the paper's recipe at every t, for 2 steps
    assert (configs["drdd_s0"]["residual_train_timesteps"], configs["drdd_s0"]["residual_steps"]) == ("sampler", 1)
    assert (configs["drdd_uniform_s0"]["residual_train_timesteps"], configs["drdd_uniform_s0"]["residual_steps"]) \
        == ("uniform", 2)
    assert {r["network_calls"] for r in _rows(state, "methods") if r["method"] == "regression"} == {1}
    # paper training: 1+1, 2+2, 2 + subtracted noise, 2+2 with the noise drawn per voxel; default: 1+2, 1 + subtracted
    steps = _rows(state, "steps")
    assert [(r["method"], r["network_calls"]) for r in steps] == [("drdd_uniform", 2), ("drdd_uniform", 4),
                                                                  ("drdd_uniform", 2), ("drdd_uniform", 4),
                                                                  ("drdd", 3), ("drdd", 1)]
    assert [r["noise_field"] for r in steps] == ["correlated"] * 3 + ["independent"] + ["correlated"] * 2
    for row in state["rows"].values():
        assert 0 <= row["mean"]["mae"] < 4096


def test_scores_match_numpy_on_the_written_files(quick):
    _, _, state = quick
    cases = state["data"]["cases"]
    assert len(cases) == state["data"]["test_cases"] >= 1
    water = _row(state, "methods", "water")
    regression = _row(state, "methods", "regression")
    for case, water_case, reg_case in zip(cases, water["cases"], regression["cases"]):
        ct, body = _volume(case["target"]), _volume(case["mask"]) > 0
        assert water_case["mae"] == pytest.approx(np.abs(ct[body]).mean(), rel=1e-9)
        sct = _volume(_case_files(regression, case)[0])
        assert reg_case["mae"] == pytest.approx(np.abs(sct - ct)[body].mean(), rel=1e-6)
    assert water["mean"]["mae"] == pytest.approx(np.mean([c["mae"] for c in water["cases"]]))


def test_n_sample_mean_and_calibration_of_the_std_map(quick):
    _, _, state = quick
    samples = _rows(state, "samples")
    assert [r["num_samples"] for r in samples] == [1, 2, 4]
    assert [r["network_calls"] for r in samples] == [3, 6, 12]  # 1 + 2 steps per sample
    assert samples[0]["mean"]["mae"] == _row(state, "methods", "drdd")["mean"]["mae"]  # same model and seed
    assert "calibration" not in samples[0]
    for row in samples[1:]:
        for case, calib in zip(state["data"]["cases"], row["calibration"]["cases"]):
            sct_file, std_file = _case_files(row, case)
            sct, std = _volume(sct_file), _volume(std_file)
            ct, body = _volume(case["target"]), _volume(case["mask"]) > 0
            error, spread = np.abs(sct - ct)[body], std[body]
            assert spread.min() >= 0 and spread.max() > 0
            assert calib["spearman"] == pytest.approx(spearmanr(spread, error).statistic, abs=1e-9)
            top = np.argsort(-spread, kind="stable")[:math.ceil(0.1 * spread.size)]
            assert calib["top_error"] == pytest.approx(error[top].mean(), rel=1e-9)
            assert calib["rest_error"] == pytest.approx(np.delete(error, top).mean(), rel=1e-9)


def test_data_efficiency_drops_pairs_but_keeps_every_ct_for_the_denoiser(quick):
    _, work, state = quick
    base = json.loads((work / "data" / "phantom" / "phantom.json").read_text())
    half = json.loads((work / "data" / "pairs50.json").read_text())
    assert len(base["training"]) == 2 and len(half["training"]) == 1
    ct = {Path(work / "data" / "phantom" / i["target"]).resolve() for i in base["training"] + base["unpaired_target"]}
    assert {Path(i["target"]).resolve() for i in half["training"] + half["unpaired_target"]} == ct
    assert [(i["id"], Path(i["source"]).resolve()) for i in half["test"]] == [
        (i["id"], (work / "data" / "phantom" / i["source"]).resolve()) for i in base["test"]]
    noise = [(work / "runs" / name / "models" / "noise_checkpoint.pt").read_bytes()
             for name in ("drdd_blind_s0", "drdd_blind_s0_pairs50", "drdd_s0_pairs50", "drdd_mrblind_s0",
                          "drdd_mrblind_s0_pairs50")]
    assert noise[0] == noise[1] and noise[2] != noise[0] and noise[3] == noise[4]
    rows = _rows(state, "data_efficiency")
    methods = ("drdd", "drdd_blind", "drdd_mrblind", "regression", "water", "linear", "oracle")
    assert {(r["method"], r["training_pairs"]) for r in rows} == {(m, k) for m in methods for k in (1, 2)}
    oracle = [r["mean"]["mae"] for r in rows if r["method"] == "oracle"]  # the floor needs no training pair
    assert oracle[0] == oracle[1] and oracle[0] < min(r["mean"]["mae"] for r in rows if r["method"] == "water")
    assert _row(state, "data_efficiency", "drdd", fraction=0.5)["training"] == "drdd_s0_pairs50"


def test_report_and_which_method_when_come_from_the_json(quick):
    out, _, state = quick
    which = (out / "which_method_when.md").read_text()
    assert "QUICK MODE" in which
    reg, drdd = _row(state, "methods", "regression"), _row(state, "methods", "drdd")
    d, r = drdd["mean"]["mae"], reg["mean"]["mae"]
    assert f"DRDD {d:.1f} HU against regression {r:.1f} HU ({d / r:.2f}× regression's MAE)" in which
    assert f"Spearman(std, |error|) = {_rows(state, 'samples')[-1]['calibration']['spearman']:.2f}" in which
    # equal compute: each DRDD budget (two networks) against the regression run of as many iterations in all
    budget = _rows(state, "budget")
    drdd_budgets = [r for r in budget if r["method"] == "drdd"]
    assert len(drdd_budgets) == 2 and "**Equal compute**" in which
    for d in drdd_budgets:
        total = sum(d["iterations"].values())
        (r,) = [r for r in budget if r["method"] == "regression" and sum(r["iterations"].values()) == total]
        steps = " + ".join(str(n) for n in d["iterations"].values())
        assert (f"DRDD {d['mean']['mae']:.1f} HU after {steps} iterations" in which
                and f"regression {r['mean']['mae']:.1f} HU after {total}" in which)
    md = (out / "claims.md").read_text()
    assert which in md
    for title in ("## 1. Methods", "## 2. Samples", "## 3. Sampling steps", "## 4. Noise level",
                  "## 5. Data efficiency", "## 6. Training budget", "## 7. Harmonization", "## Trainings"):
        assert title in md
    assert "(not run)" not in md
    for png in ("budget", "data_efficiency", "noise_level", "steps", "samples", "harmonization", "examples"):
        assert (out / f"claims_{png}.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_trains_and_scores_nothing_again(quick):
    out, work, before = quick
    proc = _run(out, work, "--resume")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count("done, skipped") == len(SECTIONS)
    assert "training " not in proc.stderr and "scored " not in proc.stderr
    after = json.loads((out / "claims.json").read_text())
    assert after["trainings"] == before["trainings"] and after["rows"] == before["rows"]


def test_a_resumed_run_on_other_settings_keeps_the_trainings_machine_and_names_its_own(quick):
    out, work, _ = quick
    cmd = [sys.executable, str(SCRIPT), "--quick", "--threads", "2", "--out", str(out), "--work", str(work), "--resume"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    meta = json.loads((out / "claims.json").read_text())["meta"]
    assert meta["threads"] == 1 and meta["runs"][0]["threads"] == 1 and meta["runs"][-1]["threads"] == 2
    machine = next(line for line in (out / "claims.md").read_text().splitlines() if line.startswith("- Machine:"))
    assert "1 torch thread(s)" in machine and machine.count("; threads 2") == 1


def test_a_section_whose_lists_change_reruns_from_the_recorded_rows(quick):
    out, work, before = quick
    proc = _run(out, work, "--resume", "--only", "samples", "--samples", "1", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "section samples (" in proc.stderr and "training " not in proc.stderr and "scored " not in proc.stderr
    after = json.loads((out / "claims.json").read_text())
    assert [after["rows"][k]["num_samples"] for k in after["sections"]["samples"]["rows"]] == [1, 2]
    assert after["sections"]["samples"]["params"]["samples"] == [1, 2]
    assert after["sections"]["methods"] == before["sections"]["methods"]


def test_merge_writes_one_report_and_refuses_another_setup(quick, tmp_path):
    out, _, state = quick
    other = json.loads((out / "claims.json").read_text())
    other["config"]["phantom"] = {"variation": "high"}
    (tmp_path / "high").mkdir()
    (tmp_path / "high" / "claims.json").write_text(json.dumps(other))
    cmd = [sys.executable, str(SCRIPT), "--merge", str(out / "claims.json"), str(tmp_path / "high" / "claims.json"),
           "--out", str(tmp_path / "merged")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "phantom" in proc.stderr and not (tmp_path / "merged" / "claims.json").exists()
    proc = subprocess.run(cmd[:4] + cmd[5:], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    merged = json.loads((tmp_path / "merged" / "claims.json").read_text())
    assert merged["rows"] == json.loads((out / "claims.json").read_text())["rows"]
    assert "## 1. Methods" in (tmp_path / "merged" / "claims.md").read_text()
