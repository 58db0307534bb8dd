"""Run the bundle the way users do (``python -m monai.bundle run ...`` in a subprocess), sized for CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "drdd"
TRAIN = "bundles/drdd/train.json"

#: Size-only overrides: tiny networks, a 32 x 32 x 16 phantom with 4 pairs and 2 CT-only subjects, 4 iterations.
TINY = [
    "--network_preset", "tiny", "--epochs", "1", "--epoch_length", "4", "--batch_size", "1",
    "--samples_per_volume", "2", "--patch_size", "[32,32]", "--checkpoint_interval", "2", "--log_interval", "2",
    "--phantom#subjects", "4", "--phantom#unpaired", "2", "--phantom#shape", "[32,32,16]",
    "--phantom#spacing_mm", "[6.6,6.6,10.5]",
]


def env() -> dict[str, str]:
    """One compute thread per process (CI has 2 cores) and the checkout importable."""
    out = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return out


def bundle_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", *args]


def run_bundle(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m monai.bundle <args>`` from the repository root; output (stdout + stderr) in ``.stdout``."""
    result = subprocess.run(bundle_command(*args), cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-6000:]}"
    return result


def recomputed_maes(root: Path, report: dict[str, Any]) -> list[float]:
    """The MAE (HU, inside the body mask) of every case of a bundle's metrics report, recomputed with numpy from the
    bundle's own sCT (``SCTPredictor.from_bundle``, seed 0) and the phantom CT, independently of the scorer."""
    import nibabel as nib
    import numpy as np

    from drdd_med.data.spec import load_spec
    from drdd_med.workflows.predictor import SCTPredictor

    spec = load_spec(root / "data" / "phantom" / "phantom.json")
    items = {item["id"]: item for split in ("training", "validation", "test") for item in spec.items(split)}
    predictor = SCTPredictor.from_bundle(root, device="cpu")
    maes = []
    for case in report["cases"]:
        item = items[case["case"]]
        sct = predictor.predict(Path(item["source"])).hu[0].numpy().astype(np.float64)
        body = np.asarray(nib.load(item["mask"]).dataobj) > 0
        maes.append(float(np.abs(sct - np.asarray(nib.load(item["target"]).dataobj, np.float64))[body].mean()))
    return maes
