#!/usr/bin/env python
"""Which DRDD stage holds the sCT: the residual stage alone against the full sampler, for trained bundles.

The *residual stage alone* is the sampler with the noise stage replaced by subtracting the noise it drew
(``subtract_noise``, METHOD.md §10.2): what is left is the residual network's estimate of the CT,
``anchor(source) - r̂``, with no denoiser call. The *full* sampler is the model's default (residual steps, then
noise steps). Their difference is what the denoiser adds. Both run through ``SCTPredictor`` (the ``translate``
path) and are scored by ``evaluate_predictor`` (the training report's scorer) on the held-out splits of the bundle's
phantom; ``--references`` scores other bundles (e.g. a regression model trained at the same budget) once beside
them. No training: pass the output folders of ``python -m monai.bundle run training`` runs.

Usage (from the repository root)::

    python benchmarks/stage_split.py --bundles bundles/drdd --references /tmp/regression_run

Results (``--name``, default stage_split): ``<out>/<name>.json`` (every row) and ``<out>/<name>.md`` (the table).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

from claims_lib.bundle_scoring import add_arguments, reference_rows, require_models, run_record  # noqa: E402
from noise_field import phantom_spec  # noqa: E402

METRICS = ("mae", "mae_bone", "psnr_2025", "ssim_2023", "through_plane_ratio")
#: sampler settings of each row: the model's default, and the residual net's estimate with no denoiser call
STAGES = {"full": {}, "residual_only": {"noise_steps": 0, "subtract_noise": True}}


def measure(bundles: list[Path], splits: list[str], spec: Any, work: Path,
            threads: int | None = None) -> dict[str, Any]:
    """Score every bundle with both stage settings on every split; rows keyed ``<bundle>|<stage>|<split>``.

    Raises:
        ValueError: a bundle holds a regression model (it has no stages).
    """
    from drdd_med.workflows.predictor import SCTPredictor
    from drdd_med.workflows.report import evaluate_predictor

    rows: dict[str, Any] = {}
    for bundle in bundles:
        for stage, options in STAGES.items():
            predictor = SCTPredictor.from_bundle(bundle, device="cpu", threads=threads, seed=0, **options)
            if predictor.config.method == "regression":
                raise ValueError(f"{bundle}: a regression model has no stages; pass it with --references")
            for split in splits:
                start = time.perf_counter()
                result = evaluate_predictor(predictor, spec, work / "eval" / bundle.name / f"{stage}_{split}", split,
                                            baselines=False, montage=False)
                rows[f"{bundle}|{stage}|{split}"] = {
                    "bundle": str(bundle), "stage": stage, "split": split, "cases": result["num_cases"],
                    "network_calls": sum(predictor.steps), "seconds": round(time.perf_counter() - start, 1),
                    **{m: result["model"].get(m) for m in METRICS}}
    return {"rows": rows}


def references(bundles: list[Path], splits: list[str], spec: Any, work: Path,
               threads: int | None = None) -> dict[str, Any]:
    """Rows ``<name>|<split>`` of ``bundles`` (regression, or any model at its default sampling) and of the trivial
    baselines, per split, scored as the DRDD rows are."""
    return {f"{r['name']}|{r['split']}": {"name": r["name"], "split": r["split"],
                                            **{m: r["metrics"].get(m) for m in METRICS}}
            for r in reference_rows(bundles, splits, spec, work, threads)}


def table(result: dict[str, Any]) -> str:
    """Markdown: one line per bundle and split, the full sampler's MAE, the residual stage's and the difference."""
    rows = result["rows"].values()
    lines = ["| bundle | split | full sampler MAE (HU) | residual stage alone | the denoiser's gain | bone, full / alone |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if r["stage"] != "full":
            continue
        alone = result["rows"][f"{r['bundle']}|residual_only|{r['split']}"]
        lines.append(f"| {Path(r['bundle']).name} | {r['split']} | {r['mae']:.1f} | {alone['mae']:.1f} | "
                     f"{alone['mae'] - r['mae']:+.1f} | {r['mae_bone']:.0f} / {alone['mae_bone']:.0f} |")
    for ref in result.get("references", {}).values():
        bone = "–" if ref["mae_bone"] is None else f"{ref['mae_bone']:.0f}"
        lines.append(f"| *{ref['name']}* | {ref['split']} | {ref['mae']:.1f} | – | – | {bone} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--bundles", type=Path, nargs="+", required=True,
                   help="trained DRDD bundle folders (output_dir of a training run: models/ inside)")
    add_arguments(p, "stage_split", _HERE / "_work" / "stage_split", beside="DRDD rows")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    from drdd_med.data.spec import load_spec
    from drdd_med.io.atomic import write_atomic

    require_models(p, args.bundles + args.references)
    start, load = time.perf_counter(), os.getloadavg()
    spec = load_spec(args.spec) if args.spec else phantom_spec(args.work)
    try:
        result = measure(args.bundles, args.splits, spec, args.work, args.threads)
    except ValueError as err:
        p.error(str(err))
    if args.references:
        result["references"] = references(args.references, args.splits, spec, args.work, args.threads)
    result.update(**run_record("stage_split.py", argv, start, load), note=args.note)
    write_atomic(args.out / f"{args.name}.json", json.dumps(result, indent=1) + "\n")
    text = ("# Which DRDD stage holds the sCT\n\n"
            f"_Generated by `{result['command']}` ({result['seconds']:.0f} s, {result['machine']}, "
            f"{result['threads']} thread(s))._ {args.note} The residual stage alone is the residual network's "
            "estimate of the CT (the drawn noise subtracted, no denoiser call); the denoiser's gain is its MAE "
            "minus the full sampler's.\n\n" + table(result))
    write_atomic(args.out / f"{args.name}.md", text)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
