"""``benchmarks/inference.py``: the pipeline-only row runs end to end at the quick size, with networks that cost
nothing and are called for the residual step only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "inference.py"


def test_pipeline_only_row_runs(tmp_path):
    out = tmp_path / "inference.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--only", "pipeline-oracle-quick", "--threads", "1",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["failed"] == []
    (row,) = report["results"]
    assert row["name"] == "pipeline-oracle-quick" and row["evaluations"] == 1 and row["shape"] == [128, 128, 16]
    assert row["network_calls"] >= 1
