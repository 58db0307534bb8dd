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
                               "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]) == 0
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
