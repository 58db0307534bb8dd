"""``drdd-med phantom``: generate the paired head phantom dataset (T1w / T2w MR, CBCT -> CT; NIfTI + data spec)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``phantom``."""
    from drdd_med.data.domains import DOMAINS
    from drdd_med.data.phantom.generate import DEFAULT_SHAPE, DEFAULT_SPACING_MM
    from drdd_med.data.phantom.variation import VARIATIONS

    p = subparsers.add_parser(
        "phantom", help="generate the paired MR/CT head phantom dataset",
        description="Write seeded paired source / CT / body-mask head phantoms as NIfTI (T1w MR by default; T2w MR "
                    "and CBCT with --domains), plus CT-only subjects for the noise stage, and a data spec "
                    "(phantom.json) with training/validation/test split by subject. Re-running with the same options "
                    "reuses a complete dataset.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (e.g. bundles/drdd/data/phantom)")
    p.add_argument("--subjects", type=int, default=12, help="paired subjects, split 4:1:1 train/val/test (default: 12)")
    p.add_argument("--unpaired", type=int, default=16, help="CT-only subjects for the noise stage (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    p.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("X", "Y", "Z"),
                   help="volume size in voxels (default: %(default)s)")
    p.add_argument("--spacing", type=float, nargs=3, default=list(DEFAULT_SPACING_MM), metavar=("SX", "SY", "SZ"),
                   help="voxel size in mm (default: %(default)s)")
    p.add_argument("--domains", type=_domain_list, default=["t1w"], metavar="LIST",
                   help=f"comma-separated source domains per subject, of {','.join(DOMAINS)} (default: t1w, the "
                        "quick-start dataset); with any other list every spec item names its domain")
    p.add_argument("--variation", choices=sorted(VARIATIONS), default="default",
                   help="inter-subject variation: 'high' varies head size and shape, skull, ventricles and atrophy, "
                        "sinus and mastoid air, neck, lesions and the MR scanner (default: default)")
    p.add_argument("--force", action="store_true", help="replace an existing phantom folder made with other options")
    p.add_argument("--montage", nargs="?", const="", default=None, metavar="PNG",
                   help="also save a montage (every source domain | CT | mask) of the first training subject "
                        "(default path: OUT/montage.png)")
    p.set_defaults(func=run)
    return p


def _domain_list(text: str) -> list[str]:
    """``"t1w,cbct"`` -> ``["t1w", "cbct"]`` (the generator checks the names)."""
    return [d.strip().lower() for d in text.split(",") if d.strip()]


def run(args: argparse.Namespace) -> int:
    """Generate (or reuse) the dataset; print the spec path."""
    from drdd_med.data.phantom.generate import write_phantom_dataset

    start = time.perf_counter()
    spec = write_phantom_dataset(args.out, subjects=args.subjects, unpaired=args.unpaired, seed=args.seed,
                                 shape=args.shape, spacing_mm=args.spacing, force=args.force, domains=args.domains,
                                 variation=args.variation)
    print(f"phantom spec: {spec} ({time.perf_counter() - start:.1f} s)")
    if args.montage is not None:
        from drdd_med.cli.montage import montage_from_spec

        png = Path(args.montage) if args.montage else Path(args.out) / "montage.png"
        print(f"montage: {montage_from_spec(spec, png)}")
    return 0
