#!/usr/bin/env python
"""How the axial slices' noise fields should relate: MAE, through-plane and stripe ratios of trained bundles.

A 2D / 2.5D DRDD model samples every axial slice on its own, from a noise field z(x, y) per slice
(``VolumeDRDDInferer(noise_field=..., noise_correlation=...)``). One field shared by every slice extrudes its
texture along z (streaks in coronal and sagittal views, and an sCT smoother across slices than the CT); independent
fields make neighbouring slices disagree (stripes). Between the two, an AR(1) field along z with adjacent-slice
correlation rho. This script samples trained bundles with each setting through ``SCTPredictor`` (the ``translate``
path) and scores them with ``evaluate_predictor`` (the training report's scorer), on the held-out splits of the
bundle's phantom. No training: pass the output folders of ``python -m monai.bundle run training`` runs.

Usage (from the repository root)::

    python -m monai.bundle run training --config_file bundles/drdd/train.json        # the quick start
    python benchmarks/noise_field.py --bundles bundles/drdd                          # results/noise_field.*

Results (``--name``, default noise_field): ``<out>/<name>.json`` (every row, per bundle and split), ``<name>.md``
(the table) and ``<name>.png`` (coronal and sagittal views of the first split's first case for each setting, one
sample each, next to its CT). ``--samples N`` scores the mean of N samples and adds the std map's calibration
(``claims.calibration``, through the claims benchmark's ``Recorder``).
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

from claims import TRAIN_CONFIG, Recorder  # noqa: E402
from claims_lib.bundle_scoring import add_arguments, reference_rows, require_models, run_record  # noqa: E402

METRICS = ("mae", "psnr_2025", "ssim_2023", "through_plane_ratio", "in_plane_ratio", "stripe_ratio")
#: the std map's calibration with --samples N > 1 (claims.calibration: inside the body, per case, then the mean)
CALIBRATION = ("spearman", "top_error", "rest_error")
CORRELATIONS = (0.0, 0.5, 0.7, 0.85, 1.0)


def field_options(rho: float) -> dict[str, Any]:
    """Inferer options of one row: the named fields at the ends (1 = shared, 0 = independent), AR(1) between."""
    if rho >= 1.0:
        return {"noise_field": "shared"}
    if rho <= 0.0:
        return {"noise_field": "independent"}
    return {"noise_field": "correlated", "noise_correlation": rho}


def field_label(rho: float) -> str:
    """``independent``, ``shared`` or ``correlated, rho <rho>``."""
    name = field_options(rho)["noise_field"]
    return name if name != "correlated" else f"{name}, rho {rho:g}"


def phantom_spec(work: Path) -> Any:
    """The bundle's phantom (``train.json``'s ``phantom`` settings), generated under ``work`` when missing."""
    from monai.bundle import ConfigParser

    from drdd_med.workflows.data import prepare_spec

    settings = ConfigParser.load_config_file(str(TRAIN_CONFIG))["phantom"]
    return prepare_spec(work / "phantom" / "phantom.json", work / "phantom", settings)


def measure(bundles: list[Path], correlations: list[float], splits: list[str], spec: Any, work: Path,
            threads: int | None = None, samples: int = 1) -> dict[str, Any]:
    """Score every bundle with every correlation on every split; rows keyed ``<bundle>|<rho>|<split>``. With
    ``samples > 1`` the sCT is the mean of that many samples and each row adds its std map's calibration."""
    from drdd_med.workflows.data import evaluation_cases
    from drdd_med.workflows.predictor import SCTPredictor
    from drdd_med.workflows.report import evaluate_predictor

    rows: dict[str, Any] = {}
    for bundle in bundles:
        for rho in correlations:
            predictor = SCTPredictor.from_bundle(bundle, device="cpu", threads=threads, num_samples=samples,
                                                 **field_options(rho))
            for split in splits:
                start, out = time.perf_counter(), work / "eval" / bundle.name / f"{rho}_{split}_n{samples}"
                recorder = Recorder(predictor, evaluation_cases(spec, split), out / "sct")
                result = evaluate_predictor(recorder, spec, out, split, baselines=False, montage=False)
                row = {"bundle": str(bundle), "rho": rho, "split": split, **field_options(rho), "samples": samples,
                       "cases": result["num_cases"], "seconds": round(time.perf_counter() - start, 1),
                       **{m: result["model"][m] for m in METRICS}}
                if recorder.calibration:
                    row.update({k: float(sum(c[k] for c in recorder.calibration) / len(recorder.calibration))
                                for k in CALIBRATION})
                rows[f"{bundle}|{rho}|{split}"] = row
                logging.info("%s rho %.2f %s: MAE %.1f HU, through-plane %.3f, stripe %.3f", bundle, rho, split,
                             row["mae"], row["through_plane_ratio"], row["stripe_ratio"])
    return {"rows": rows, "summary": summary(rows, correlations)}


def references(bundles: list[Path], splits: list[str], spec: Any, work: Path,
               threads: int | None = None) -> dict[str, dict[str, float]]:
    """MAE, PSNR, SSIM and the ratios of ``bundles`` (models without a noise field: regression) and of the trivial
    baselines, each averaged over ``splits`` by case, as the first bundle's report scores them."""
    scored: dict[str, list[dict[str, Any]]] = {}
    for row in reference_rows(bundles, splits, spec, work, threads):
        scored.setdefault(row["name"], []).append(row)
    return {name: {m: sum(r["metrics"][m] * r["cases"] for r in group) / sum(r["cases"] for r in group)
                   for m in METRICS} for name, group in scored.items()}


def summary(rows: dict[str, Any], correlations: list[float]) -> dict[str, dict[str, float]]:
    """Per correlation: each metric's mean over the bundles and splits (every case weighs the same)."""
    out = {}
    for rho in correlations:
        group = [r for r in rows.values() if r["rho"] == rho]
        weight = sum(r["cases"] for r in group)
        names = METRICS + tuple(k for k in CALIBRATION if all(k in r for r in group))
        out[str(rho)] = {m: sum(r[m] * r["cases"] for r in group) / weight for m in names}
    return out


def picture(bundle: Path, correlations: list[float], spec: Any, split: str, path: Path,
            threads: int | None = None) -> None:
    """Coronal and sagittal views of the first case of ``split``: the CT, then the sCT of each correlation."""
    import numpy as np

    from drdd_med.visualize.montage import save_montage
    from drdd_med.workflows.data import evaluation_cases
    from drdd_med.workflows.evaluate import load_volume
    from drdd_med.workflows.predictor import SCTPredictor

    case = evaluation_cases(spec, split)[0]
    ct, affine = load_volume(case["target"])
    hu = {"vmin": -1000.0, "vmax": 1500.0, "cmap": "gray"}
    panels = [("CT", ct, hu)]
    for rho in correlations:
        predictor = SCTPredictor.from_bundle(bundle, device="cpu", threads=threads, **field_options(rho))
        sct = predictor.predict(case["source"]).hu
        panels.append((field_label(rho), sct[0].numpy(), hu))
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    save_montage(path, panels, planes=("coronal", "sagittal"), spacing_mm=spacing,
                 title=f"{Path(case['source']).parent.name}: sCT by noise field (bundle {bundle.name})")


def table(result: dict[str, Any]) -> str:
    calibrated = all("spearman" in row for row in result["summary"].values())
    extra = " Spearman(std, \\|error\\|) | top-10 % error HU | rest error HU |" if calibrated else ""
    lines = ["| noise field | MAE HU | PSNR dB | SSIM | through-plane ratio | in-plane ratio | stripe ratio |" + extra,
             "|---|---|---|---|---|---|---|" + ("---|---|---|" if calibrated else "")]
    for rho, row in result["summary"].items():
        label = field_label(float(rho))
        cells = (f" {row['spearman']:.2f} | {row['top_error']:.0f} | {row['rest_error']:.0f} |" if calibrated else "")
        lines.append(f"| {label} | {row['mae']:.1f} | {row['psnr_2025']:.2f} | {row['ssim_2023']:.3f} | "
                     f"{row['through_plane_ratio']:.3f} | {row['in_plane_ratio']:.3f} | {row['stripe_ratio']:.3f} |"
                     + cells)
    for name, row in result.get("references", {}).items():
        lines.append(f"| *{name}* | {row['mae']:.1f} | {row['psnr_2025']:.2f} | {row['ssim_2023']:.3f} | "
                     f"{row['through_plane_ratio']:.3f} | {row['in_plane_ratio']:.3f} | {row['stripe_ratio']:.3f} |"
                     + (" – | – | – |" if calibrated else ""))
    per = ["| bundle | split | noise field | MAE HU | through-plane ratio | stripe ratio |",
           "|---|---|---|---|---|---|"]
    for r in result["rows"].values():
        per.append(f"| {Path(r['bundle']).name} | {r['split']} | rho {r['rho']:g} | {r['mae']:.1f} | "
                   f"{r['through_plane_ratio']:.3f} | {r['stripe_ratio']:.3f} |")
    return "\n".join(lines) + "\n\nPer bundle and split:\n\n" + "\n".join(per) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--bundles", type=Path, nargs="+", required=True,
                   help="trained bundle folders (output_dir of a training run: models/ inside)")
    p.add_argument("--correlations", type=float, nargs="+", default=list(CORRELATIONS),
                   help="adjacent-slice correlations rho; 1 = shared field, 0 = independent (default: %(default)s)")
    p.add_argument("--samples", type=int, default=1,
                   help="samples per case: N > 1 scores their mean and adds the std map's calibration (default: 1)")
    p.add_argument("--machine", default=None, help="a line describing the machine, kept in the JSON")
    add_arguments(p, "noise_field", _HERE / "_work" / "noise_field", beside="fields")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    from drdd_med.data.spec import load_spec
    from drdd_med.io.atomic import write_atomic

    require_models(p, args.bundles + args.references)
    start, load = time.perf_counter(), os.getloadavg()
    spec = load_spec(args.spec) if args.spec else phantom_spec(args.work)
    result = measure(args.bundles, args.correlations, args.splits, spec, args.work, args.threads, args.samples)
    if args.references:
        result["references"] = references(args.references, args.splits, spec, args.work, args.threads)
    picture(args.bundles[0], args.correlations, spec, args.splits[0], args.out / f"{args.name}.png", args.threads)
    result.update(**run_record("noise_field.py", argv, start, load, args.machine), note=args.note)
    write_atomic(args.out / f"{args.name}.json", json.dumps(result, indent=1) + "\n")
    text = ("# Noise field of the axial slices: DRDD sCT by adjacent-slice noise correlation\n\n"
            f"_Generated by `{result['command']}` ({result['seconds']:.0f} s, {result['machine']}, "
            f"{result['threads']} thread(s))._ {result['note']} Mean over the bundles and splits, every case "
            "weighing the same; ratios are sCT / CT (1 = the CT's): the mean change between adjacent slices "
            "(through-plane) and "
            "between neighbours within the slices (in-plane), and their quotient (stripe; > 1 = slices disagree "
            "more than the in-plane texture explains)."
            + (f" The sCT is the mean of {args.samples} samples; Spearman is the rank correlation of their per-voxel "
               "std with the |error| inside the body, and the top-10 % error that of the most uncertain voxels."
               if args.samples > 1 else "")
            + "\n\n" + table(result) + f"\n![{args.name}.png]({args.name}.png)\n")
    write_atomic(args.out / f"{args.name}.md", text)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
