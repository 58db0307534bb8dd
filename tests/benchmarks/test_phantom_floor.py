"""benchmarks/phantom_floor.py: the oracle scored by the one scorer equals its MAE recomputed by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import phantom_floor  # noqa: E402

from drdd_med.data.phantom.oracle import oracle_sct  # noqa: E402
from drdd_med.workflows.evaluate import load_volume  # noqa: E402

TINY = {"subjects": 4, "unpaired": 0, "shape": [32, 32, 16], "spacing_mm": [6.6, 6.6, 10.5]}


def test_floor_scores_the_oracle_next_to_the_baselines(tmp_path):
    assert phantom_floor.main(["--phantom", *(f"{k}={v}" for k, v in TINY.items()), "--name", "tiny",
                               "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--blur"]) == 0
    result = json.loads((tmp_path / "out" / "phantom_floor_tiny.json").read_text())
    spec = json.loads((tmp_path / "work" / "tiny" / "phantom" / "phantom.json").read_text())
    for split in ("validation", "test"):
        row, maes = result["splits"][split], []
        for item in spec[split]:
            folder = tmp_path / "work" / "tiny" / "phantom"
            ct, mask = load_volume(folder / item["target"])[0], load_volume(folder / item["mask"])[0] > 0
            error = np.abs(ct.astype(np.float64) - oracle_sct(folder / item["source"]).astype(np.float64))
            maes.append(error[mask].mean())
        assert row["oracle"]["mae"] == pytest.approx(np.mean(maes), rel=1e-9)
        assert row["oracle"]["mae"] < row["baselines"]["linear"]["mae"] < row["baselines"]["water"]["mae"] * 1.2


def test_blur_ladder_rungs_equal_the_blurred_oracle_scored_by_hand(tmp_path):
    from scipy.ndimage import gaussian_filter

    report = tmp_path / "metrics.json"
    common = ["--phantom", *(f"{k}={v}" for k, v in TINY.items()), "--name", "tiny", "--out", str(tmp_path / "out"),
              "--work", str(tmp_path / "work")]
    first = phantom_floor.main(common + ["--blur", "1"])
    result = json.loads((tmp_path / "out" / "phantom_floor_tiny.json").read_text())
    oracle, blurred = result["ladder"]["validation"]
    assert first == 0 and oracle["sigma_voxels"] == 0 and blurred["sigma_voxels"] == 1
    folder = tmp_path / "work" / "tiny" / "phantom"
    spec = json.loads((folder / "phantom.json").read_text())
    maes = []
    for item in spec["validation"]:
        ct, mask = load_volume(folder / item["target"])[0], load_volume(folder / item["mask"])[0] > 0
        sct = gaussian_filter(oracle_sct(folder / item["source"]).astype(np.float64), sigma=(1, 1, 0), mode="nearest")
        maes.append(np.abs(ct - sct.astype(np.float32))[mask].mean())
    assert blurred["mae"] == pytest.approx(np.mean(maes), rel=1e-6)
    assert blurred["mae"] > oracle["mae"]  # soft edges cost a perfect segmentation
    # a report half-way between the two rungs reads as half a voxel of blur
    report.write_text(json.dumps({"model": {"mae": (oracle["mae"] + blurred["mae"]) / 2}}))
    assert phantom_floor.main(common + ["--blur", "1", "--reports", f"half={report}"]) == 0
    result = json.loads((tmp_path / "out" / "phantom_floor_tiny.json").read_text())
    assert result["reports"]["half"]["equivalent_blur_voxels"] == pytest.approx(0.5)
    assert (tmp_path / "out" / "phantom_floor_tiny.png").stat().st_size > 0


def test_bad_blur_and_unreadable_report_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        phantom_floor.main(["--blur", "0"])
    assert "--blur" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        phantom_floor.main(["--reports", f"x={tmp_path / 'missing.json'}"])
    assert "missing.json" in capsys.readouterr().err
