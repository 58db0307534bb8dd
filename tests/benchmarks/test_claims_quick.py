"""Smoke test of ``benchmarks/claims.py --quick``: the pipeline runs end to end and writes well-formed results.

Only the pipeline is checked (shapes of the JSON, call counts, table, plots, resume); the numbers of the quick
configuration mean nothing, except the harmonization MMD, which must fall with the added noise (Prop. 3.1).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "claims.py"
METHODS = {"drdd_unc", "drdd_cond", "coupled", "entangled", "regression"}
CALLS = {"drdd_unc": 4, "drdd_cond": 4, "coupled": 4, "entangled": 8, "regression": 1}


def _run(out: Path, work: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out), "--work", str(work), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("claims")
    out, work = base / "out", base / "work"
    proc = _run(out, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, work, proc


def test_json_complete_and_well_formed(quick_run):
    out, _, proc = quick_run
    state = json.loads((out / "claims.json").read_text())
    assert state["meta"]["partial"] is False and state["meta"]["quick"] is True
    assert state["meta"]["elapsed_seconds"] > 0
    units = state["units"]
    assert set(units) == {"harmonization", "methods:s0", "no_denoiser", "steps", "data_eff:f0.5", "noise:0.5",
                          "noise:1.3", "timing"}
    assert all(u["status"] == "done" for u in units.values())
    rows = units["methods:s0"]["rows"]
    assert {r["method"] for r in rows} == METHODS
    for r in rows:
        assert r["network_calls"] == CALLS[r["method"]]
        assert len(r["per_volume"]) == state["data"]["eval_subjects"]
        for key in ("mae", "psnr", "ssim", "mae_soft_tissue"):
            assert math.isfinite(r["mean"][key])
        assert 0 <= r["mean"]["mae"] <= 4095 and -1 <= r["mean"]["ssim"] <= 1
    assert [r["network_calls"] for r in units["steps"]["rows"]] == [2, 4]
    (nd,) = units["no_denoiser"]["rows"]
    assert nd["subtract_noise"] is True and nd["noise_steps"] == 0 and nd["network_calls"] == 2
    eff = units["data_eff:f0.5"]["rows"]
    assert {r["method"] for r in eff} == {"drdd_unc", "drdd_cond", "coupled", "regression"}
    assert all(r["paired_subjects"] == 2 for r in eff)  # 50 % of 4 paired training subjects
    (high,) = units["noise:1.3"]["rows"]
    assert high["denoiser_trained_level"] == 1.3  # levels > 1 retrain the denoiser
    (low,) = units["noise:0.5"]["rows"]
    assert low["denoiser_trained_level"] == 1.0  # levels <= 1 reuse it
    trained = state["trainings"]
    assert "noise_unc:s0:f1:n1" in trained and "noise_unc:s0:f0.5:n1" not in trained  # shared across fractions
    assert trained["noise_unc:s0:f1:n1"]["training_slices"] > trained["residual:s0:f1:n1"]["training_slices"]
    assert "experiment" in proc.stderr and "ETA" in proc.stderr
    timing = units["timing"]["methods"]
    assert set(timing) == METHODS and all(t["seconds_per_slice"] > 0 for t in timing.values())


def test_harmonization_mmd_falls_with_noise(quick_run):
    out, _, _ = quick_run
    h = json.loads((out / "claims.json").read_text())["units"]["harmonization"]
    assert h["levels"] == [0.0, 0.5, 1.0]
    assert h["mmd2_mr_ct"][0] > h["mmd2_mr_ct"][1] > h["mmd2_mr_ct"][2]
    assert h["mmd2_mr_clean_mr"][0] == pytest.approx(min(h["mmd2_mr_clean_mr"]), abs=1e-2)


def test_table_and_plots(quick_run):
    out, _, _ = quick_run
    md = (out / "claims.md").read_text()
    assert "QUICK MODE" in md and "PARTIAL" not in md
    for label in ("DRDD (unconditional denoiser)", "Coupled RDDM", "Direct regression", "without denoiser"):
        assert label in md
    header = next(line for line in md.splitlines() if line.startswith("| Method | seeds"))
    table = md.split(header)[1].strip().splitlines()
    assert table[0].count("|") == header.count("|")  # separator matches the header
    assert sum(line.startswith("| ") for line in table[1:6]) == 5
    for png in ("claims_data_efficiency.png", "claims_noise_level.png", "claims_harmonization.png",
                "claims_steps.png", "claims_examples.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_resume_skips_finished_experiments(quick_run):
    out, work, _ = quick_run
    before = json.loads((out / "claims.json").read_text())
    proc = _run(out, work, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("done, skipped") == len(before["units"])
    assert "training " not in proc.stderr
    after = json.loads((out / "claims.json").read_text())
    assert after["trainings"] == before["trainings"] and after["units"] == before["units"]
