#!/usr/bin/env python
"""How low can an MR->CT model go on the phantom: the segmentation oracle scored by the one scorer.

The oracle (:mod:`drdd_med.data.phantom.oracle`) is the sCT of a perfect tissue segmentation of the MR: the
subject's true tissue fractions moved by its MR's misregistration, painted with the population's CT numbers. It
is scored by ``evaluate_cases`` exactly like a model (native grid, HU, inside the body mask), next to the water and
linear baselines, on the bundle's phantom (``train.json``'s ``phantom`` settings, with ``--phantom`` overrides),
for the validation split (the quick start's report) and the test split (the claims benchmark's). No training.

Usage (from the repository root)::

    python benchmarks/phantom_floor.py                                        # the quick-start phantom
    python benchmarks/phantom_floor.py --phantom variation=high subjects=24 --name high24

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

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

from claims import TRAIN_CONFIG, _assignment  # noqa: E402


def floor(phantom: dict[str, Any], work: Path, splits: tuple[str, ...] = ("validation", "test")) -> dict[str, Any]:
    """Score the oracle and the trivial baselines on each split of the phantom that ``phantom`` describes."""
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
        scored = evaluate_cases(cases, oracle, work / "eval" / split, baselines=references, montage=False)
        result["splits"][split] = {"cases": len(cases), "oracle": scored["model"], "oracle_std": scored["model_std"],
                                   "oracle_cases": scored["cases"], "baselines": scored["baselines"]}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--phantom", type=_assignment, nargs="+", default=[], metavar="KEY=VALUE",
                   help="write_phantom_dataset options over train.json's phantom (e.g. variation=high subjects=24)")
    p.add_argument("--name", default="quickstart", help="result name: <out>/phantom_floor_<name>.json")
    p.add_argument("--out", default=str(_HERE / "results"))
    p.add_argument("--work", default=str(_HERE / "_work" / "phantom_floor"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    from drdd_med.io.atomic import write_atomic

    start = time.perf_counter()
    result = floor(dict(args.phantom), Path(args.work) / args.name)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["command"] = "python benchmarks/phantom_floor.py " + " ".join(sys.argv[1:] if argv is None else argv)
    path = Path(args.out) / f"phantom_floor_{args.name}.json"
    write_atomic(path, json.dumps(result, indent=1) + "\n")
    for split, row in result["splits"].items():
        print(f"{split}: oracle MAE {row['oracle']['mae']:.1f} HU over {row['cases']} case(s); water "
              f"{row['baselines']['water']['mae']:.1f}, linear {row['baselines']['linear']['mae']:.1f}  ({path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
