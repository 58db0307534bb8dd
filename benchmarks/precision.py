"""What bf16 costs in HU: the same trained bundle sampled in fp32 and in bf16 on a spec split.

For every case both sCTs come from :class:`~drdd_med.workflows.predictor.SCTPredictor` (what ``drdd-med translate``
runs) and are scored by :func:`~drdd_med.workflows.evaluate.evaluate_cases` (the one scorer); the script adds the
mean |ΔHU| between the two sCTs inside the body mask and the ΔMAE, and the wall time of each pass.

Usage::

    python benchmarks/precision.py --bundle bundles/drdd [--spec bundles/drdd/data/phantom/phantom.json]
        [--split test] [--threads 2] [--out benchmarks/results/precision.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "precision.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "bundles" / "drdd")
    parser.add_argument("--spec", type=Path, default=None, help="data spec (default: the bundle's phantom)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=0, help="compute threads (0: automatic)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from drdd_med import keys, runtime
    from drdd_med.data.spec import load_spec
    from drdd_med.workflows.data import evaluation_cases
    from drdd_med.workflows.evaluate import evaluate_cases, load_volume
    from drdd_med.workflows.predictor import SCTPredictor

    spec = load_spec(args.spec or args.bundle / "data" / "phantom" / "phantom.json")
    cases = evaluation_cases(spec, args.split)
    scts: dict[str, dict[str, np.ndarray]] = {}
    report = {"bundle": str(args.bundle), "split": args.split, "cases": len(cases), "cpu_bf16_native":
              runtime.cpu_has_bf16(), "load_average_1min_at_start": os.getloadavg()[0], "passes": {}}
    with tempfile.TemporaryDirectory(prefix="drdd_precision_") as work:
        for precision in ("fp32", "bf16"):
            predictor = SCTPredictor.from_bundle(args.bundle, device="cpu", precision=precision, threads=args.threads)
            outputs = scts.setdefault(precision, {})

            def predict(source: str, outputs: dict = outputs, predictor: SCTPredictor = predictor) -> np.ndarray:
                outputs[source] = predictor.predict(source).hu[0].numpy()
                return outputs[source]

            start = time.perf_counter()
            result = evaluate_cases(cases, predict, Path(work) / precision, montage=False)
            report["passes"][precision] = {"seconds": time.perf_counter() - start, "threads": torch.get_num_threads(),
                                           "mae": result["model"]["mae"],
                                           "psnr_2025": result["model"]["psnr_2025"],
                                           "ssim_2023": result["model"]["ssim_2023"]}
    deltas = []
    for case in cases:
        source = case[keys.SOURCE]
        mask = load_volume(case[keys.MASK])[0] > 0 if keys.MASK in case else np.ones_like(scts["fp32"][source], bool)
        deltas.append(float(np.abs(scts["bf16"][source] - scts["fp32"][source])[mask].mean()))
    report["mean_abs_delta_hu"] = float(np.mean(deltas))
    report["per_case_mean_abs_delta_hu"] = deltas
    report["delta_mae_hu"] = report["passes"]["bf16"]["mae"] - report["passes"]["fp32"]["mae"]
    report["speedup_bf16"] = report["passes"]["fp32"]["seconds"] / report["passes"]["bf16"]["seconds"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "per_case_mean_abs_delta_hu"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
