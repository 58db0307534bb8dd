"""``drdd-med evaluate``: score a trained bundle on a data-spec split against real CT, with trivial baselines."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from drdd_med.cli.options import add_bundle_options, add_sampling_options, quiet_optional_decoders, user_error

__all__ = ["add_parser", "run"]

_EPILOG = """\
examples:
  # the phantom test split, results in eval/ (metrics.json, metrics.csv, montages/*.png)
  drdd-med evaluate --spec bundles/drdd/data/phantom/phantom.json --bundle bundles/drdd --out eval

  # the validation split with 4 samples per case, without montages
  drdd-med evaluate --spec data_specs/synthrad2023_task1_brain.json --split validation --out eval \\
      --samples 4 --no-montage

metrics (whole 3D volumes in HU, inside the body mask):
  mae            mean absolute error, HU (SynthRAD2023 and 2025)
  psnr_2023/2025 peak signal-to-noise ratio, dB (HU range [-1024, 3000] / [-1024, 3071])
  ssim_2023      masked SSIM (SynthRAD2023); ms_ssim_2025: masked multi-scale SSIM (SynthRAD2025)
  mae_air/soft_tissue/bone, mean_error: drdd_med diagnostics per CT class and bias (not SynthRAD)
  through_plane_sct/ct/ratio: mean |difference| of adjacent axial slices of sCT and CT, and sCT/CT (not SynthRAD)
baselines: "water" (0 HU inside the body) and "linear" (a straight line from MR to HU fitted on the training split).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate``."""
    p = subparsers.add_parser(
        "evaluate", help="score a trained bundle against real CT (SynthRAD metrics, baselines, montages)",
        description="Translate every case of a data-spec split, compare the synthetic CT with the real CT "
                    "(SynthRAD2023 and SynthRAD2025 image metrics, MAE per tissue class) next to two trivial "
                    "baselines, print a "
                    "table and write metrics.json, metrics.csv and one montage PNG per case.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spec", type=Path, required=True, help="data spec JSON (see data_specs/README.md)")
    p.add_argument("--split", default="test", choices=("training", "validation", "test"),
                   help="split to evaluate: its cases with a target CT; when it has none, the other held-out split "
                        "is scored, with a warning (default: test)")
    add_bundle_options(p)
    add_sampling_options(p, "samples averaged per case")
    p.add_argument("--montage", action=argparse.BooleanOptionalAction, default=True,
                   help="write montage PNGs (default: on)")
    p.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                   help="also score the water and linear baselines and, on the phantom, its segmentation-oracle "
                        "floor (default: on)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Evaluate with :func:`drdd_med.workflows.report.evaluate_predictor`; print the table; return 0 (2 for a
    missing model or a sampling option the model cannot take)."""
    from drdd_med.data.spec import load_spec
    from drdd_med.workflows.evaluate import format_table
    from drdd_med.workflows.paths import default_bundle_dir
    from drdd_med.workflows.predictor import SCTPredictor
    from drdd_med.workflows.report import evaluate_predictor

    quiet_optional_decoders()
    spec = load_spec(args.spec)
    residual, noise = args.steps or (None, None)
    try:
        predictor = SCTPredictor.from_bundle(args.bundle or default_bundle_dir(), device=args.device,
                                             residual_steps=residual, noise_steps=noise, num_samples=args.samples,
                                             seed=args.seed, noise_correlation=args.noise_correlation)
    except (FileNotFoundError, ValueError) as exc:
        return user_error("evaluate", exc)
    start = time.perf_counter()
    result = evaluate_predictor(predictor, spec, args.out, args.split, baselines=args.baselines, montage=args.montage)
    print(format_table(result))
    print(f"\n{result['num_cases']} case(s) in {time.perf_counter() - start:.1f} s; "
          f"wrote {args.out / 'metrics.json'}, {args.out / 'metrics.csv'}"
          + (f" and {args.out / 'montages'}" if args.montage else ""))
    return 0
