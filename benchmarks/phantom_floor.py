#!/usr/bin/env python
"""How low can an MR->CT model go on the phantom: the segmentation oracle scored by the one scorer.

The oracle (:mod:`drdd_med.data.phantom.oracle`) is the sCT of a perfect tissue segmentation of the MR: the
subject's true tissue fractions moved by its MR's misregistration, painted with the population's CT numbers. It
is scored by ``evaluate_cases`` exactly like a model (native grid, HU, inside the body mask), next to the water and
linear baselines, on the bundle's phantom (``train.json``'s ``phantom`` settings, with ``--phantom`` overrides),
for the validation split (the quick start's report) and the test split (the claims benchmark's). No training.

The *blur ladder* (``--blur``) scores the oracle smoothed within each axial slice by a Gaussian of σ voxels: how
much a perfect segmentation loses when its edges are as soft as a model's. A trained model's MAE read against the
ladder says how much of its distance to the floor a sharper sCT could recover; ``--reports NAME=metrics.json``
draws models' MAEs on the ladder's plot (``<out>/phantom_floor_<name>.png``).

Usage (from the repository root)::

    python benchmarks/phantom_floor.py                                        # the quick-start phantom
    python benchmarks/phantom_floor.py --phantom variation=high subjects=24 --name high24
    python benchmarks/phantom_floor.py --reports "quick start=bundles/drdd/eval/validation/metrics.json"

Results: ``<out>/phantom_floor_<name>.json`` (per split: mean, std and per-case rows of every method).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

from claims import TRAIN_CONFIG, _assignment  # noqa: E402


def blurred_oracle(sigma_voxels: float) -> Any:
    """The oracle smoothed within each axial slice by a Gaussian of ``sigma_voxels`` (a ``CaseBaseline``)."""
    from scipy.ndimage import gaussian_filter

    from drdd_med.workflows.evaluate import CaseBaseline, PhantomOracleBaseline, axial_axis

    oracle = PhantomOracleBaseline()

    class BlurredOracle(CaseBaseline):
        def __call__(self, case: Any) -> np.ndarray:
            sct = np.asarray(oracle(case), dtype=np.float64).reshape(case.target.shape)
            sigma = [float(sigma_voxels)] * sct.ndim
            sigma[axial_axis(case.affine)] = 0.0
            return gaussian_filter(sct, sigma=sigma, mode="nearest").astype(np.float32)

    return BlurredOracle()


def blur_name(sigma_voxels: float) -> str:
    """The baseline name of one rung of the blur ladder."""
    return f"oracle_blur_{sigma_voxels:g}"


def floor(phantom: dict[str, Any], work: Path, splits: tuple[str, ...] = ("validation", "test"),
          blur: tuple[float, ...] = ()) -> dict[str, Any]:
    """Score the oracle, the trivial baselines and the oracle blurred in-plane by each ``blur`` σ (voxels) on
    each split of the phantom that ``phantom`` describes."""
    from monai.bundle import ConfigParser

    from drdd_med.data.domains import source_normalize
    from drdd_med.workflows.data import evaluation_cases, prepare_spec
    from drdd_med.workflows.evaluate import evaluate_cases, trivial_baselines

    settings = {**ConfigParser.load_config_file(str(TRAIN_CONFIG))["phantom"], **phantom}
    folder = work / "phantom"
    spec = prepare_spec(folder / "phantom.json", folder, settings)
    result: dict[str, Any] = {"phantom": settings, "splits": {}}
    for split in splits:
        cases = evaluation_cases(spec, split)
        references = trivial_baselines(spec.items("training"), source_normalize("t1w"), cases)
        oracle = references.pop("oracle")
        references.update({blur_name(sigma): blurred_oracle(sigma) for sigma in blur})
        scored = evaluate_cases(cases, oracle, work / "eval" / split, baselines=references, montage=False)
        result["splits"][split] = {"cases": len(cases), "oracle": scored["model"], "oracle_std": scored["model_std"],
                                   "oracle_cases": scored["cases"], "baselines": scored["baselines"]}
    return result


def ladder(split_result: dict[str, Any], blur: tuple[float, ...]) -> list[dict[str, float]]:
    """The blur ladder of one split: σ = 0 (the oracle) and each ``blur`` σ, with MAE overall and per tissue."""
    names = ("mae", "mae_bone", "mae_air", "mae_soft_tissue")
    rows = [{"sigma_voxels": 0.0, **{k: split_result["oracle"][k] for k in names}}]
    for sigma in sorted(blur):
        row = split_result["baselines"][blur_name(sigma)]
        rows.append({"sigma_voxels": float(sigma), **{k: row[k] for k in names}})
    return rows


def equivalent_blur(rungs: list[dict[str, float]], mae: float) -> float | None:
    """The σ at which the ladder's MAE equals ``mae`` (linear between rungs); None outside the ladder."""
    sigmas, maes = [r["sigma_voxels"] for r in rungs], [r["mae"] for r in rungs]
    if len(rungs) < 2 or not maes[0] <= mae <= maes[-1]:
        return None
    return float(np.interp(mae, maes, sigmas))


def plot_ladder(result: dict[str, Any], path: Path) -> None:
    """MAE against in-plane blur σ per split, with the reports' MAEs as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(result["ladder"])
    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        rungs = result["ladder"][split]
        ax.plot([r["sigma_voxels"] for r in rungs], [r["mae"] for r in rungs], "o-", color="k",
                label="segmentation oracle, blurred in-plane")
        base = result["splits"][split]["baselines"]
        for name, style in (("linear", ":"), ("water", "--")):
            if name in base:
                ax.axhline(base[name]["mae"], color="grey", ls=style, lw=1, label=f"{name} ({base[name]['mae']:.0f})")
        for i, (name, rep) in enumerate(result.get("reports", {}).items()):
            if rep["split"] == split:
                ax.axhline(rep["mae"], color=f"C{i}", lw=1.5, label=f"{name} ({rep['mae']:.1f})")
        ax.set(title=f"{split} ({result['splits'][split]['cases']} cases)", ylabel="MAE inside the body (HU)",
               xlabel="Gaussian σ within the slices (voxels)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--phantom", type=_assignment, nargs="+", default=[], metavar="KEY=VALUE",
                   help="write_phantom_dataset options over train.json's phantom (e.g. variation=high subjects=24)")
    p.add_argument("--blur", type=float, nargs="*", default=[0.5, 1.0, 1.5, 2.0], metavar="SIGMA",
                   help="rungs of the blur ladder: in-plane Gaussian σ in voxels (none: no ladder)")
    p.add_argument("--reports", type=_assignment, nargs="+", default=[], metavar="NAME=METRICS_JSON",
                   help="models' metrics.json (training report or drdd-med evaluate) to read against the ladder")
    p.add_argument("--report-split", choices=["validation", "test"], default="validation",
                   help="the split the --reports scored")
    p.add_argument("--name", default="quickstart", help="result name: <out>/phantom_floor_<name>.json")
    p.add_argument("--out", default=str(_HERE / "results"))
    p.add_argument("--work", default=str(_HERE / "_work" / "phantom_floor"))
    args = p.parse_args(argv)
    if any(sigma <= 0 for sigma in args.blur):
        p.error(f"--blur: every σ must be > 0, got {args.blur}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    from drdd_med.io.atomic import write_atomic

    reports = {}
    for name, path in args.reports:
        try:
            reports[name] = json.loads(Path(path).read_text())["model"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            p.error(f"--reports {name}={path}: not a readable metrics.json with a 'model' row ({exc})")
    start = time.perf_counter()
    blur = tuple(args.blur)
    result = floor(dict(args.phantom), Path(args.work) / args.name, blur=blur)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["command"] = "python benchmarks/phantom_floor.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if blur:
        result["ladder"] = {split: ladder(row, blur) for split, row in result["splits"].items()}
        rungs = result["ladder"][args.report_split]
        result["reports"] = {name: {"split": args.report_split, "mae": row["mae"],
                                    "equivalent_blur_voxels": equivalent_blur(rungs, row["mae"])}
                             for name, row in reports.items()}
        plot_ladder(result, out / f"phantom_floor_{args.name}.png")
    path = out / f"phantom_floor_{args.name}.json"
    write_atomic(path, json.dumps(result, indent=1) + "\n")
    for split, row in result["splits"].items():
        print(f"{split}: oracle MAE {row['oracle']['mae']:.1f} HU over {row['cases']} case(s); water "
              f"{row['baselines']['water']['mae']:.1f}, linear {row['baselines']['linear']['mae']:.1f}  ({path})")
        for rung in result.get("ladder", {}).get(split, [])[1:]:
            print(f"  oracle blurred in-plane by σ = {rung['sigma_voxels']:g} voxels: {rung['mae']:.1f} HU")
    for name, rep in result.get("reports", {}).items():
        blur_text = "outside the ladder" if rep["equivalent_blur_voxels"] is None else \
            f"the oracle blurred by σ = {rep['equivalent_blur_voxels']:.2f} voxels"
        print(f"{name}: {rep['mae']:.1f} HU on {rep['split']} = {blur_text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
