"""``drdd-med spec``: check a data spec, or write one for a SynthRAD-style folder."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``spec`` with its ``check`` and ``synthrad`` actions."""
    p = subparsers.add_parser(
        "spec", help="check a data spec, or write one for a SynthRAD-style folder",
        description="'check SPEC' validates a data spec and lists every problem; 'synthrad ROOT --out SPEC' indexes "
                    "<ROOT>/<case>/{mr|cbct,ct,mask}.nii.gz folders (SynthRAD2023 layout) into a spec split by case.",
    )
    actions = p.add_subparsers(dest="action", metavar="<action>", required=True)
    check = actions.add_parser("check", help="validate a data spec (schema and every path)")
    check.add_argument("spec", type=Path, help="data spec JSON")
    synth = actions.add_parser("synthrad", help="write a spec for a SynthRAD-style folder")
    synth.add_argument("root", type=Path, help="folder with one sub-folder per case")
    synth.add_argument("--out", type=Path, required=True, help="spec JSON to write (paths are stored relative to it)")
    synth.add_argument("--source", choices=("mr", "cbct"), default="mr", help="source image: mr (Task 1) or cbct (Task 2)")
    synth.add_argument("--val-fraction", type=float, default=0.1, help="validation fraction of cases (default: 0.1)")
    synth.add_argument("--test-fraction", type=float, default=0.1, help="test fraction of cases (default: 0.1)")
    synth.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the chosen action."""
    from drdd_med.data.spec import load_spec

    if args.action == "check":
        spec = load_spec(args.spec)
        counts = ", ".join(f"{s}: {len(spec.items(s))}" for s in ("training", "validation", "test", "unpaired_target"))
        print(f"{args.spec}: valid ({counts})")
        return 0
    from drdd_med.data.synthrad import write_synthrad_spec

    out = write_synthrad_spec(args.root, args.out, source=args.source, val_fraction=args.val_fraction,
                              test_fraction=args.test_fraction, seed=args.seed)
    spec = load_spec(out)
    print(f"wrote {out} (training: {len(spec.items('training'))}, validation: {len(spec.items('validation'))}, "
          f"test: {len(spec.items('test'))})")
    return 0
