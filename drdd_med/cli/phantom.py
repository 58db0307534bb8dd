"""``drdd-med phantom``: generate the paired MR/CT head phantom dataset (NIfTI + data spec)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``phantom``."""
    from drdd_med.data.phantom.generate import DEFAULT_SHAPE, DEFAULT_SPACING_MM

    p = subparsers.add_parser(
        "phantom", help="generate the paired MR/CT head phantom dataset",
        description="Write seeded paired T1w MR / CT / body-mask head phantoms as NIfTI, plus CT-only subjects for "
                    "the noise stage, and a data spec (phantom.json) with training/validation/test split by subject. "
                    "Re-running with the same options reuses a complete dataset.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (e.g. bundles/drdd/data/phantom)")
    p.add_argument("--subjects", type=int, default=12, help="paired subjects, split 4:1:1 train/val/test (default: 12)")
    p.add_argument("--unpaired", type=int, default=16, help="CT-only subjects for the noise stage (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    p.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("X", "Y", "Z"),
                   help="volume size in voxels (default: %(default)s)")
    p.add_argument("--spacing", type=float, nargs=3, default=list(DEFAULT_SPACING_MM), metavar=("SX", "SY", "SZ"),
                   help="voxel size in mm (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing phantom folder made with other options")
    p.add_argument("--montage", nargs="?", const="", default=None, metavar="PNG",
                   help="also save an MR | CT | mask montage of the first training subject (default path: OUT/montage.png)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Generate (or reuse) the dataset; print the spec path."""
    from drdd_med.data.phantom.generate import write_phantom_dataset

    start = time.perf_counter()
    spec = write_phantom_dataset(args.out, subjects=args.subjects, unpaired=args.unpaired, seed=args.seed,
                                 shape=args.shape, spacing_mm=args.spacing, force=args.force)
    print(f"phantom spec: {spec} ({time.perf_counter() - start:.1f} s)")
    if args.montage is not None:
        from drdd_med.cli.montage import montage_from_spec

        png = Path(args.montage) if args.montage else Path(args.out) / "montage.png"
        print(f"montage: {montage_from_spec(spec, png)}")
    return 0
