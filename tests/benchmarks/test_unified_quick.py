"""``benchmarks/unified.py --quick``: the unified model and the specialists train through the bundle at an equal total
budget, and the scores agree with numpy on the files the run wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "unified.py"
DOMAINS = ["t1w", "t2w", "cbct"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    base = tmp_path_factory.mktemp("unified")
    out, work = base / "out", base / "work"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out), "--work", str(work)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, work, json.loads((out / "unified.json").read_text())


def _volume(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)


def test_the_specialists_iterations_sum_to_the_unified_models(quick):
    _, work, state = quick
    done = {}
    for name in ("unified_s0", *(f"{d}_s0" for d in DOMAINS)):
        checkpoints = sorted((work / "runs" / name / "models").glob("*_checkpoint.pt"))
        done[name] = {p.name.split("_")[0]: torch.load(p, weights_only=True)["trainer"]["iteration"]
                      for p in checkpoints}
        assert state["trainings"][name]["iterations"] == done[name]
    assert done["unified_s0"] == {"noise": 6, "residual": 6}
    for stage in ("noise", "residual"):
        assert sum(done[f"{d}_s0"][stage] for d in DOMAINS) == done["unified_s0"][stage]
    assert {d: done[f"{d}_s0"] for d in DOMAINS} == {d: {"noise": 2, "residual": 2} for d in DOMAINS}


def test_each_model_lists_the_domains_it_was_trained_on(quick):
    _, work, state = quick
    configs = {name: json.loads((work / "runs" / name / "models" / "model_config.json").read_text())
               for name in state["trainings"]}
    assert configs["unified_s0"]["domains"] == DOMAINS
    assert all(configs[f"{d}_s0"]["domains"] == [d] for d in DOMAINS)
    assert all(not c["noise_conditioned"] for c in configs.values())  # one CT prior for every domain
    for d in DOMAINS:
        spec = json.loads((work / "data" / f"{d}.json").read_text())
        assert {item["domain"] for split in ("training", "validation", "test") for item in spec[split]} == {d}
    assert state["harmonisation"]["noise_level"] == configs["unified_s0"]["noise_level"]


def test_a_per_domain_mae_recomputed_with_numpy(quick):
    _, work, state = quick
    spec = json.loads((work / "data" / "unified" / "phantom.json").read_text())
    items = {item["id"]: item for item in spec["test"]}
    score = state["scores"]["unified_s0"]
    assert all(items[r["case"]]["domain"] == r["domain"] for r in score["cases"])  # each case under its domain
    (row,) = [r for r in score["cases"] if r["domain"] == "cbct"]
    item = items[row["case"]]
    base = work / "data" / "unified"
    sct = _volume(Path(score["files"]) / "sct" / f"{row['case']}_sct.nii.gz")
    ct, body = _volume(base / item["target"]), _volume(base / item["mask"]) > 0
    assert row["mae"] == pytest.approx(np.abs(sct - ct)[body].mean(), rel=1e-6)
    assert score["domains"]["cbct"]["mae"] == row["mae"]  # one test subject per domain
    entry = state["summary"]["cbct"]
    assert entry["unified"]["mae"]["mean"] == row["mae"]
    specialist = state["scores"]["cbct_s0"]["domains"]["cbct"]["mae"]
    assert entry["mae_ratio"] == pytest.approx(row["mae"] / specialist)
    assert entry["within_tolerance"] == (row["mae"] <= 1.1 * specialist)


def test_report_and_a_montage_per_domain(quick):
    out, _, state = quick
    md = (out / "unified.md").read_text()
    assert "QUICK MODE" in md and "unified 6 iterations; each of the 3 specialists 2 (sum 6)" in md
    for domain in DOMAINS:
        assert f"| {domain} | " in md
        assert (out / f"unified_{domain}.png").read_bytes()[:4] == b"\x89PNG"
    assert set(state["harmonisation"]["pairs"]) == {"t1w-t2w", "t1w-cbct", "t2w-cbct"}
