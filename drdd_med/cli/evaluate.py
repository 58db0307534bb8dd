"""``drdd-med evaluate``: score a trained bundle on a data-spec split against real CT, with trivial baselines."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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
baselines: "water" (0 HU inside the body) and "linear" (a straight line from MR to HU fitted on the training split).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate``."""
    from drdd_med.cli.translate import parse_steps

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
                   help="split to evaluate; its cases need a target CT (default: test)")
    p.add_argument("--bundle", type=Path, default=None, help="trained bundle folder (default: bundles/drdd)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--steps", type=parse_steps, default=None, metavar="R,N",
                   help="residual,noise steps (default: the model's)")
    p.add_argument("--samples", type=int, default=1, metavar="N", help="samples averaged per case (default: 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--montage", action=argparse.BooleanOptionalAction, default=True,
                   help="write montage PNGs (default: on)")
    p.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                   help="also score the water and linear baselines (default: on)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Evaluate; print the table; return 0 (2 for a missing model or bad spec)."""
    from drdd_med.cli.translate import quiet_optional_decoders
    from drdd_med.data.spec import load_spec
    from drdd_med.workflows.evaluate import evaluate_cases, format_table, trivial_baselines
    from drdd_med.workflows.paths import default_bundle_dir
    from drdd_med.workflows.predictor import SCTPredictor

    quiet_optional_decoders()
    spec = load_spec(args.spec)
    cases = spec.items(args.split)
    if not cases:
        raise ValueError(f"{args.spec}: split {args.split!r} has no cases; choose another --split.")
    residual, noise = args.steps or (None, None)
    try:
        predictor = SCTPredictor.from_bundle(args.bundle or default_bundle_dir(), device=args.device,
                                             residual_steps=residual, noise_steps=noise, num_samples=args.samples,
                                             seed=args.seed)
    except FileNotFoundError as exc:
        print(f"drdd-med evaluate: error: {exc}", file=sys.stderr)
        return 2
    baselines = trivial_baselines(spec.items("training"), predictor.config.source_normalize) if args.baselines else {}
    start = time.perf_counter()
    result = evaluate_cases(cases, lambda source: predictor.predict(source).hu, args.out, baselines=baselines,
                            montage=args.montage)
    print(format_table(result))
    print(f"\n{len(cases)} case(s) of split {args.split!r} in {time.perf_counter() - start:.1f} s; "
          f"wrote {args.out / 'metrics.json'}, {args.out / 'metrics.csv'}"
          + (f" and {args.out / 'montages'}" if args.montage else ""))
    return 0
