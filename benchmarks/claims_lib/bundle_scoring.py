"""What the benchmarks that score trained bundles (``noise_field.py``, ``stage_split.py``) share: their command-line
options, the check that each folder holds a model, the reference rows (other bundles and the trivial baselines,
per split) and the record of the run (time, load, machine, threads, command)."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser, name: str, work: Path, beside: str) -> None:
    """``--splits --spec --references --name --threads --out --work --note``; ``beside``: what the references are
    scored beside (in their help)."""
    p.add_argument("--splits", nargs="+", default=["validation", "test"], choices=("validation", "test"))
    p.add_argument("--spec", type=Path, default=None,
                   help="data spec JSON to score on (default: the bundle's phantom, generated under --work)")
    p.add_argument("--references", type=Path, nargs="*", default=[],
                   help=f"bundles scored once beside the {beside} (e.g. a regression model trained at the same "
                        "budget); the trivial baselines (water, linear, the phantom's oracle) come with them")
    p.add_argument("--name", default=name, help="result name: <out>/<name>.*")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the predictor's, one per idle CPU)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    p.add_argument("--work", type=Path, default=work)
    p.add_argument("--note", default="", help="what the bundles are (how they were trained), kept in the JSON")


def require_models(p: argparse.ArgumentParser, bundles: list[Path]) -> None:
    """Exit 2 (``p.error``) naming every folder without ``models/model.pt``."""
    missing = [str(b) for b in bundles if not (b / "models" / "model.pt").is_file()]
    if missing:
        p.error(f"no trained model (models/model.pt) in {', '.join(missing)}: train the bundle first")


def reference_rows(bundles: list[Path], splits: list[str], spec: Any, work: Path,
                   threads: int | None = None) -> list[dict[str, Any]]:
    """One row per reference and split: ``{"name", "split", "cases", "metrics"}`` for each bundle (named
    ``<method>: <folder>``) at its default sampling and, with the first bundle, each trivial baseline."""
    from drdd_med.workflows.predictor import SCTPredictor
    from drdd_med.workflows.report import evaluate_predictor

    rows = []
    for index, bundle in enumerate(bundles):
        predictor = SCTPredictor.from_bundle(bundle, device="cpu", threads=threads)
        for split in splits:
            result = evaluate_predictor(predictor, spec, work / "eval" / bundle.name / f"reference_{split}", split,
                                        baselines=index == 0, montage=False)
            named = {f"{predictor.config.method}: {bundle.name}": result["model"], **result["baselines"]}
            rows += [{"name": n, "split": split, "cases": result["num_cases"], "metrics": m} for n, m in named.items()]
    return rows


def run_record(script: str, argv: list[str] | None, start: float, load: tuple[float, ...],
               machine: str | None = None) -> dict[str, Any]:
    """``seconds`` since ``start`` (``time.perf_counter``), ``load_average_at_start``, ``machine``, ``threads`` and
    the ``command`` of a benchmark run."""
    import torch

    return {"seconds": round(time.perf_counter() - start, 1), "load_average_at_start": [round(v, 2) for v in load],
            "machine": machine or f"{platform.machine()}, {os.cpu_count()} CPU(s)",
            "threads": torch.get_num_threads(),
            "command": f"python benchmarks/{script} " + shlex.join(sys.argv[1:] if argv is None else argv)}
