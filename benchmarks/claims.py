#!/usr/bin/env python
"""DRDD against direct regression and the trivial baselines, measured on the code users run.

Every model is trained by the bundle itself: ``monai.bundle.run`` on ``bundles/drdd/train.json`` with the run ids
users call (``training``, ``train_residual``, ``train_joint``, ``train_regression``), the stage trainers, EMA,
warm-up, checkpoints and export, and only size overrides (iterations, seed, datalist, output folder, noise level,
...). The quick start's time budget is off (``time_budget_minutes=0``): every training runs the iterations it
states. Each training gets its own output folder under ``--work``. Every model is sampled by ``SCTPredictor`` and
scored by ``evaluate_predictor`` / ``evaluate_cases`` (the scorer of the training report and ``drdd-med evaluate``:
native grid, HU, inside the body mask) on the test split of the bundle's phantom, at its default size and with the
shipped presets.

Usage (from the repository root)::

    python benchmarks/claims.py --threads 2               # full run: hours on 2 CPU cores
    python benchmarks/claims.py --resume --only samples   # continue a partial run, or run one section
    python benchmarks/claims.py --report-only             # claims.md, which_method_when.md and plots from the JSON
    python benchmarks/claims.py --quick --out /tmp/c --work /tmp/cw   # 32x32x16 phantom, tiny nets, 4 iterations

Sections (``--only``): harmonization, methods, samples, steps, noise_level, data_efficiency, budget. Results:
``<out>/claims.json`` (every number, per case), ``claims.md``, ``which_method_when.md`` and ``claims_*.png``.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import drdd_med  # noqa: E402
from claims_lib.harmonize import harmonization, spec_slices  # noqa: E402
from claims_lib.merge import (merge_states, recorded_params, section_params, setup_difference,  # noqa: E402
                              upgrade_state)
from claims_lib.report import BUDGET_METHODS, EFFICIENCY_METHODS, write_report  # noqa: E402
from drdd_med import keys, runtime  # noqa: E402
from drdd_med.io.atomic import write_atomic  # noqa: E402

logger = logging.getLogger("claims")

TRAIN_CONFIG = _HERE.parent / "bundles" / "drdd" / "train.json"
SECTIONS = ("harmonization", "methods", "samples", "steps", "noise_level", "data_efficiency", "budget")
#: Training recipes: (run id of train.json, overrides that make the recipe). The bundle cannot train the coupled
#: and entangled baselines (they exist only as networks and inferers in the package), so they have no recipe.
#: The noise stage's MSE loss: the default until L1 measured better; the variants measured with it keep it.
NOISE_MSE = {"loss_function": "$torch.nn.MSELoss()"}
#: The paper's residual training (every t) with 2 residual steps: the bundle's default until sampler-aligned
#: training with 1 step measured better; the variants measured with it keep it, so that their rows stay what ran.
PAPER_RESIDUAL = {"residual_train_timesteps": "uniform", "residual_steps": 2, **NOISE_MSE}
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "drdd": ("training", {}),
    # the previous default: the noise net's loss MSE (the paper names L1 and L2)
    "drdd_mse": ("training", NOISE_MSE),
    "drdd_uniform": ("training", PAPER_RESIDUAL),
    "drdd_blind": ("training", {"noise_conditioned": False, **PAPER_RESIDUAL}),
    # the MR-blind CT prior with the absolute-σ time input, trained over σ <= 1: one prior for every noise level
    "drdd_prior": ("training", {"noise_conditioned": False, "noise_time_input": "absolute", "noise_sigma_max": 1.0,
                                **PAPER_RESIDUAL}),
    "drdd_joint": ("train_joint", PAPER_RESIDUAL),
    "drdd_2.5d": ("training", {"mode": "2.5d", **PAPER_RESIDUAL}),
    # 2 residual steps, the residual net trained at both of them only
    "drdd_sampler_t": ("training", {"residual_train_timesteps": "sampler", "residual_steps": 2, **NOISE_MSE}),
    # the training iterations split 1 : 7 between the noise and residual stages (the plan's total unchanged)
    "drdd_split": ("training", {"noise_epochs": 4, "residual_epochs": 28, **NOISE_MSE}),
    # the default with the paper's MR-blind denoiser, which trains on every CT (unpaired ones included)
    "drdd_mrblind": ("training", {"noise_conditioned": False}),
    # the noise net predicts the clean CT (x0) instead of ε, with the default's L1 loss
    "drdd_x0": ("training", {"noise_prediction": "sample"}),
    "regression": ("train_regression", {"method": "regression"}),
}
NOT_IN_BUNDLE = {name: "no run id of train.json trains it" for name in ("coupled", "entangled")}

#: Sizes of the full run; the bundle's own settings (train.json) apply to everything not listed.
FULL: dict[str, Any] = dict(
    seeds=[0, 1], variants=["drdd_mse", "drdd_x0", "drdd_uniform", "drdd_blind", "drdd_prior", "drdd_joint",
                            "drdd_2.5d", "drdd_sampler_t", "drdd_split"], budgets=[4, 8, 16, 32],
    fractions=[1.0, 0.5, 0.25, 0.1], noise_levels=[0.1, 0.2, 0.5, 1.0], step_pairs=[[1, 1], [2, 2], [4, 4], [8, 8]],
    noise_step_counts=[1, 2, 4],
    samples=[1, 2, 4, 8], mmd_levels=[0.0, 0.1, 0.3, 0.5, 0.8, 1.0, 1.3, 2.0], mmd_repeats=3, split="test",
    bundle={}, phantom={},
)
#: --quick: the pipeline end to end in about a minute on one thread (numbers mean nothing).
QUICK: dict[str, Any] = dict(
    seeds=[0], variants=["drdd_blind", "drdd_joint"], budgets=[1, 2], fractions=[1.0, 0.5], noise_levels=[0.2, 0.5],
    step_pairs=[[1, 1], [2, 2]], noise_step_counts=[2], samples=[1, 2, 4], mmd_levels=[0.0, 0.5, 1.0],
    mmd_repeats=1,
    # warm-up and EMA horizon shrink with the iterations, so that 4 iterations move the exported weights
    bundle={"network_preset": "tiny", "epochs": 1, "epoch_length": 4, "warmup_iterations": 1, "ema_decay": 0.5,
            "batch_size": 1, "samples_per_volume": 2, "patch_size": [32, 32], "checkpoint_interval": 2,
            "log_interval": 2},
    phantom={"subjects": 4, "unpaired": 2, "shape": [32, 32, 16], "spacing_mm": [6.6, 6.6, 10.5]},
)


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def calibration(sct: np.ndarray, std: np.ndarray, ct: np.ndarray, mask: np.ndarray, top: float = 0.1) -> dict:
    """How well the per-voxel std of the samples predicts |sCT - CT| inside the body.

    Returns:
        ``spearman`` (rank correlation of std and |error|), ``top_error`` / ``rest_error`` (mean |error| in HU of
        the ``top`` fraction of voxels with the largest std, ties broken by position, and of the others) and
        ``decile_error`` (mean |error| per std decile, lowest first).
    """
    from scipy.stats import spearmanr

    body = mask > 0
    error, spread = np.abs(sct - ct)[body].astype(np.float64), std[body].astype(np.float64)
    order = np.argsort(-spread, kind="stable")
    k = max(1, math.ceil(top * spread.size))
    flagged = np.zeros(spread.size, dtype=bool)
    flagged[order[:k]] = True
    deciles = np.array_split(order[::-1], 10)
    return {"spearman": float(spearmanr(spread, error).statistic), "top_fraction": top,
            "top_error": float(error[flagged].mean()), "rest_error": float(error[~flagged].mean()),
            "decile_error": [float(error[d].mean()) for d in deciles]}


class Recorder:
    """Stands in for an SCTPredictor in ``evaluate_predictor``: times each prediction, writes its sCT (and std map)
    as NIfTI into ``out`` and scores the std map's :func:`calibration` against the case's CT."""

    def __init__(self, predictor: Any, cases: list[dict[str, str]], out: Path) -> None:
        self.predictor, self.config, self.out = predictor, predictor.config, out
        self.cases = {case[keys.SOURCE]: case for case in cases}
        self.costs: list[tuple[float, float]] = []
        self.calibration: list[dict[str, Any]] = []

    def predict(self, source: str, domain: str | None = None) -> Any:
        from drdd_med.workflows.evaluate import load_volume

        start, cpu = time.perf_counter(), time.process_time()
        result = self.predictor.predict(source, domain=domain)
        self.costs.append((time.perf_counter() - start, time.process_time() - cpu))
        case = self.cases[source]
        self.predictor.save_nifti(result, self.out, case.get("id", Path(source).parent.name))
        if result.std_hu is not None:
            ct, mask = load_volume(case[keys.TARGET])[0], load_volume(case[keys.MASK])[0]
            self.calibration.append(calibration(result.hu[0].numpy(), result.std_hu[0].numpy(), ct, mask))
        return result


class Bench:
    """Trains through the bundle and scores with SCTPredictor + evaluate_predictor; records both in ``state``."""

    def __init__(self, cfg: dict[str, Any], state: dict[str, Any], work: Path, threads: int, device: str,
                 save: Any) -> None:
        from monai.bundle import ConfigParser

        self.cfg, self.state, self.work, self.threads, self.device, self.save = cfg, state, work, threads, device, save
        self.defaults = ConfigParser.load_config_file(str(TRAIN_CONFIG))
        self.phantom = {**self.defaults["phantom"], **cfg["phantom"]}
        self.bundle = dict(cfg["bundle"])
        self.epochs = int(self.bundle.get("epochs", self.defaults["epochs"]))
        self.noise_level = float(self.bundle.get("noise_level", self.defaults["noise_level"]))
        self.rows: dict[str, dict[str, Any]] = state["rows"]
        self._specs: dict[str, Any] = {}

    # ------------------------------------------------------------------ data
    def spec(self, fraction: float = 1.0):
        """The phantom's spec, or one that keeps ``fraction`` of its training pairs and moves the CT of the others
        (with their masks) to ``unpaired_target``, so that DRDD's denoiser still sees every CT. Subsets are nested:
        the first pairs of one seeded permutation."""
        from drdd_med.workflows.data import norm_dict, prepare_spec

        name = "all" if fraction >= 1.0 else f"pairs{round(100 * fraction)}"
        if name in self._specs:
            return self._specs[name]
        folder = self.work / "data" / "phantom"
        base = prepare_spec(folder / "phantom.json", folder, self.phantom)
        if name == "all":
            self._specs[name] = base
            return base
        train = base.items("training")
        order = np.random.default_rng(1234).permutation(len(train))
        keep = sorted(order[:max(1, round(fraction * len(train)))])
        moved = [{k: v for k, v in item.items() if k != keys.SOURCE} for i, item in enumerate(train) if i not in keep]
        raw = {"name": f"{base.name}, {len(keep)} of {len(train)} training pairs", "description": base.description,
               "source": {"modality": base.source_modality, "normalize": norm_dict(base.source_norm)},
               "target": {"modality": base.target_modality, "normalize": norm_dict(base.target_norm)},
               "training": [train[i] for i in keep], "validation": base.items("validation"),
               "test": base.items("test"), "unpaired_target": base.items("unpaired_target") + moved}
        path = self.work / "data" / f"{name}.json"
        write_atomic(path, json.dumps(raw, indent=1) + "\n")
        self._specs[name] = prepare_spec(path)
        return self._specs[name]

    # ------------------------------------------------------------------ training
    def train(self, recipe: str, seed: int, fraction: float = 1.0, **overrides: Any) -> str:
        """Train one model with the bundle (once; later calls return the recorded run) and return its name.

        A DRDD model with the MR-blind denoiser at ``fraction < 1`` reuses the denoiser of the same recipe on all
        data (its noise checkpoint is copied, then ``train_residual`` trains the residual stage on the kept pairs).
        """
        from monai.bundle import run

        run_id, recipe_overrides = RECIPES[recipe]
        defaults = {"epochs": self.epochs, "noise_level": self.noise_level}
        overrides = {k: v for k, v in overrides.items() if v != defaults.get(k)}  # the default run is shared
        name = f"{recipe}_s{seed}" + "".join(f"_{k}{v:g}" for k, v in sorted(overrides.items()))
        name += "" if fraction >= 1.0 else f"_pairs{round(100 * fraction)}"
        if name in self.state["trainings"]:
            return name
        out = self.work / "runs" / name
        shutil.rmtree(out, ignore_errors=True)  # a fresh run, so that the recorded wall-clock is the whole training
        noise_from = None
        conditioned = {"noise_conditioned": self.defaults["noise_conditioned"], **self.bundle, **recipe_overrides,
                       **overrides}["noise_conditioned"]
        if fraction < 1.0 and recipe != "regression" and not conditioned:
            noise_from = self.train(recipe, seed, 1.0, **overrides)
            (out / "models").mkdir(parents=True)
            shutil.copy2(self.work / "runs" / noise_from / "models" / "noise_checkpoint.pt", out / "models")
            run_id = "train_residual"
        spec = self.spec(fraction)
        settings = {**self.bundle, **recipe_overrides, **overrides, "seed": seed}
        logger.info("training %s: %s %s", name, run_id, settings)
        load_before, start, cpu_start = _load(), time.time(), time.process_time()
        run(run_id, config_file=str(TRAIN_CONFIG), logging_file=False, output_dir=str(out),
            dataset_dir=str(self.work / "data"), datalist=str(spec.path), phantom=self.phantom, threads=self.threads,
            device=f"$drdd_med.runtime.resolve_device({self.device!r})", time_budget_minutes=0, **settings)
        wall, cpu = time.time() - start, time.process_time() - cpu_start
        checkpoints = sorted((out / "models").glob("*_checkpoint.pt"))
        last_stage_end = max(p.stat().st_mtime for p in checkpoints if p.stat().st_mtime >= start)
        report = json.loads((out / "eval" / "validation" / "metrics.json").read_text())
        self.state["trainings"][name] = {
            "recipe": recipe, "run_id": run_id, "seed": seed, "settings": settings, "datalist": spec.path.name,
            "training_pairs": len(spec.items("training")), "noise_stage_from": noise_from,
            "iterations": {p.name.replace("_checkpoint.pt", ""): int(torch.load(p, weights_only=True)["trainer"]
                                                                     ["iteration"]) for p in checkpoints},
            "train_seconds": round(last_stage_end - start, 1), "run_seconds": round(wall, 1),
            "cpu_seconds": round(cpu, 1), "threads": torch.get_num_threads(), "load_before": load_before,
            "load_after": _load(), "validation": report["model"], "output_dir": str(out)}
        self.save()
        return name

    # ------------------------------------------------------------------ scoring
    def score(self, recipe: str, seed: int = 0, fraction: float = 1.0, baselines: bool = False,
              montage: bool = False, residual_steps: int | None = None, noise_steps: int | None = None,
              num_samples: int = 1, subtract_noise: bool = False, noise_field: str | None = None,
              **overrides: Any) -> list[dict[str, Any]]:
        """Train (or reuse) a model and score it with ``evaluate_predictor`` (SCTPredictor + evaluate_cases).

        Returns:
            The model's row (metrics per case and mean/std over cases, sampling cost, calibration of the std map
            when ``num_samples > 1``), then with ``baselines`` one row per trivial baseline of the same spec.
        """
        from drdd_med.workflows.data import evaluation_cases
        from drdd_med.workflows.predictor import SCTPredictor
        from drdd_med.workflows.report import evaluate_predictor

        training = self.train(recipe, seed, fraction, **overrides)
        options = {"residual_steps": residual_steps, "noise_steps": noise_steps, "num_samples": num_samples,
                   "noise_field": noise_field}
        if subtract_noise:
            options.update(noise_steps=0, subtract_noise=True)
        key = training + "|" + ",".join(f"{k}={v}" for k, v in sorted(options.items()) if v is not None)
        spec = self.spec(fraction)
        known = self.state.setdefault("baseline_names", {}).get(spec.path.name)  # the rows trivial_baselines gave
        names = [key] + ([f"{b}|{spec.path.name}" for b in known or []] if baselines else [])
        if all(n in self.rows for n in names) and not (baselines and known is None):
            return [self.rows[n] for n in names]
        predictor = SCTPredictor.from_bundle(self.work / "runs" / training, device=self.device, threads=self.threads,
                                             seed=0, **{k: v for k, v in options.items() if v is not None})
        out = self.work / "eval" / key.replace("|", "__").replace(",", "_").replace("=", "")
        recorder = Recorder(predictor, evaluation_cases(spec, self.cfg["split"]), out / "sct")
        load_before = _load()
        result = evaluate_predictor(recorder, spec, out, split=self.cfg["split"], baselines=baselines,
                                    montage=montage)
        costs, calib = recorder.costs, recorder.calibration
        r, n = predictor.steps
        calls = 1 if predictor.config.method == "regression" else (r + n) * predictor.num_samples
        record = self.state["trainings"][training]
        row = {"key": key, "method": recipe, "training": training, "seed": seed, "fraction": fraction,
               "training_pairs": record["training_pairs"], "noise_level": predictor.config.noise_level,
               "mode": predictor.config.mode, "preset": predictor.config.preset, "iterations": record["iterations"],
               "train_seconds": record["train_seconds"], "residual_steps": r, "noise_steps": n,
               "num_samples": predictor.num_samples, "subtract_noise": subtract_noise, "network_calls": calls,
               "noise_field": getattr(predictor.inferer, "noise_field", None),
               "noise_correlation": getattr(predictor.inferer, "noise_correlation", None),
               "params": sum(p.numel() for p in predictor.network.parameters()),
               "sample_seconds_per_case": float(np.mean([c[0] for c in costs])),
               "sample_cpu_seconds_per_case": float(np.mean([c[1] for c in costs])), "threads": self.threads,
               "load_before": load_before, "load_after": _load(), "mean": result["model"], "std": result["model_std"],
               "cases": result["cases"], "files": str(out)}
        if calib:
            row["calibration"] = {"cases": calib, **{k: float(np.mean([c[k] for c in calib]))
                                                     for k in ("spearman", "top_error", "rest_error")}}
        rows = [row] + [{"key": f"{b}|{spec.path.name}", "method": b, "fraction": fraction,
                         "training_pairs": record["training_pairs"], "network_calls": 0, "mean": result["baselines"][b],
                         "std": result["baselines_std"][b], "cases": result["baseline_cases"][b]}
                        for b in result["baselines"]]
        self.rows.update({x["key"]: x for x in rows})
        if baselines:
            self.state["baseline_names"][spec.path.name] = list(result["baselines"])
        self.save()
        logger.info("scored %s: MAE %.1f HU (%d case(s), %.1f s per case)", key, result["model"]["mae"],
                    result["num_cases"], row["sample_seconds_per_case"])
        return rows


def run_section(name: str, bench: Bench, cfg: dict[str, Any]) -> dict[str, Any]:
    """One section's result; ``rows`` lists keys of ``state["rows"]`` (trainings and rows are shared)."""
    s0, score = cfg["seeds"][0], bench.score
    if name == "harmonization":
        spec = bench.spec()
        mr = spec_slices(spec.items("training"), keys.SOURCE, spec.source_norm)
        ct = spec_slices(spec.items("unpaired_target"), keys.TARGET, spec.target_norm)
        return harmonization(mr, ct, cfg["mmd_levels"], cfg["mmd_repeats"], seed=0)
    if name == "methods":
        rows = score("drdd", s0, baselines=True, montage=True) + score("regression", s0, montage=True)
        rows += [row for v in cfg["variants"] for row in score(v, s0)]
        rows += [row for s in cfg["seeds"][1:] for m in ("drdd", "regression") for row in score(m, s)]
        return {"rows": rows, "not_in_bundle": NOT_IN_BUNDLE}
    if name == "samples":
        return {"rows": [row for k in cfg["samples"] for row in score("drdd", s0, num_samples=k)]}
    if name == "steps":
        # the paper's residual training serves any step count; the default's residual net samples only with the one
        # step it trained at, so its rows vary the noise steps
        rows = [row for r, n in cfg["step_pairs"] for row in score("drdd_uniform", s0, residual_steps=r, noise_steps=n)]
        rows += score("drdd_uniform", s0, subtract_noise=True) + score("drdd_uniform", s0, noise_field="independent")
        rows += [row for n in cfg["noise_step_counts"] for row in score("drdd", s0, noise_steps=n)]
        return {"rows": rows + score("drdd", s0, subtract_noise=True)}
    if name == "noise_level":
        return {"rows": [row for lv in cfg["noise_levels"] for row in score("drdd_uniform", s0, noise_level=lv)]}
    if name == "data_efficiency":
        # the MR-blind denoiser trains on every CT whatever the fraction of pairs (the paper's data-efficiency claim)
        return {"rows": [row for f in cfg["fractions"] for m in EFFICIENCY_METHODS
                         for row in score(m, s0, f, baselines=m == "drdd")]}
    if name == "budget":
        # DRDD trains two networks: equal compute pairs its e epochs per stage with regression's 2e epochs
        rows = [row for e in cfg["budgets"] for m in BUDGET_METHODS if m != "regression"
                for row in score(m, s0, epochs=e)]
        doubled = sorted(set(cfg["budgets"]) | {2 * e for e in cfg["budgets"]})
        return {"rows": rows + [row for e in doubled for row in score("regression", s0, epochs=e)]}
    raise ValueError(f"unknown section {name!r}; choose from {SECTIONS}.")


def _assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` (VALUE a Python literal, else a string) for ``--set`` / ``--phantom``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. network_preset=tiny")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def add_run_options(p: argparse.ArgumentParser) -> None:
    """``--threads``, ``--device``, ``--set`` and ``--phantom``: how a benchmark trains through the bundle."""
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for training and sampling")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda:N")
    p.add_argument("--set", type=_assignment, nargs="+", default=[], metavar="KEY=VALUE",
                   help="train.json overrides for every training, e.g. network_preset=tiny epoch_length=50")
    p.add_argument("--phantom", type=_assignment, nargs="+", default=[], metavar="KEY=VALUE",
                   help="phantom options, e.g. subjects=24 unpaired=32")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="32x32x16 phantom, tiny nets, a few iterations")
    p.add_argument("--resume", action="store_true", help="keep the finished trainings and rows of <out>/claims.json")
    p.add_argument("--report-only", action="store_true", help="rewrite the markdown and plots from claims.json")
    p.add_argument("--merge", nargs="+", metavar="CLAIMS_JSON", help="write one report into --out from the "
                   "claims.json of compatible partial runs (same bundle overrides, phantom and split)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument("--out", default=str(_HERE / "results"), help="claims.json, claims.md, which_method_when.md, PNGs")
    p.add_argument("--work", default=str(_HERE / "_work" / "claims"), help="phantom, trained bundles, sCT files")
    add_run_options(p)
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds of the method table (the first serves the "
                   "one-seed sections)")
    p.add_argument("--budgets", type=int, nargs="+", help="epochs per stage of the budget section")
    p.add_argument("--samples", type=int, nargs="+", help="sample counts N of the samples section")
    p.add_argument("--fractions", type=float, nargs="+", help="fractions of the training pairs")
    p.add_argument("--noise-levels", type=float, nargs="+", help="noise levels σ_n")
    p.add_argument("--variants", nargs="*", choices=[r for r in RECIPES if r.startswith("drdd_")],
                   help="DRDD variants of the method table")
    p.add_argument("--split", choices=["test", "validation"], help="the split that is scored (default test)")
    return p.parse_args(argv)


def config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = json.loads(json.dumps(FULL))
    if args.quick:
        cfg.update(json.loads(json.dumps(QUICK)))
    for key in ("seeds", "budgets", "samples", "fractions", "noise_levels", "variants", "split"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["bundle"].update(dict(args.set))
    cfg["phantom"].update(dict(args.phantom))
    cfg["quick"] = args.quick
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    out, work = Path(args.out), Path(args.work)
    json_path = out / "claims.json"
    if args.report_only:
        if not json_path.is_file():
            raise SystemExit(f"--report-only: {json_path} does not exist; run the benchmark first.")
        state = json.loads(json_path.read_text())
        if "sections" not in state:
            raise SystemExit(f"{json_path}: written by an earlier version of this benchmark; run it again.")
        write_report(upgrade_state(state), out)
        return 0
    if args.merge:
        return merge(args.merge, out)
    cfg = config(args)
    state: dict[str, Any] = {}
    if args.resume and json_path.is_file():
        state = upgrade_state(json.loads(json_path.read_text()))
        differ = setup_difference(state["config"], cfg)
        if differ:
            raise SystemExit(f"{json_path}: made with another setup ({', '.join(differ)} differ); rerun with the "
                             "same options, or without --resume to start again.")
    state["config"] = cfg  # the sections' own lists are kept with each section (``params``)
    state.setdefault("trainings", {})
    state.setdefault("sections", {})
    state.setdefault("rows", {})
    meta = state.setdefault("meta", {})
    this_run = {"command": "python benchmarks/claims.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "seconds": 0.0}
    meta.setdefault("runs", []).append(this_run)
    device = runtime.resolve_device(args.device)
    machine = {"torch": torch.__version__, "drdd_med": drdd_med.__version__, "threads": args.threads,
               "cpu": platform.processor() or platform.machine(), "cpus": runtime.available_cpus(),
               "device": str(device), "precision": runtime.resolve_precision("auto", device)}
    this_run.update(machine)  # each run's own settings; the top level keeps the first run's (its trainings')
    for key, value in machine.items():
        meta.setdefault(key, value)
    meta.update(quick=args.quick, load_at_start=_load())
    runtime.configure_threads(args.threads)
    started = time.perf_counter()

    def save() -> None:
        this_run["seconds"] = round(time.perf_counter() - started, 1)
        meta["partial"] = partial(state)
        write_atomic(json_path, json.dumps(state, indent=1) + "\n")

    from drdd_med.workflows.data import evaluation_cases

    bench = Bench(cfg, state, work, args.threads, args.device, save)
    spec = bench.spec()
    state["data"] = {"phantom": bench.phantom, "spec": str(spec.path), "split": cfg["split"],
                     **{f"{s}_cases": len(spec.items(s)) for s in ("training", "validation", "test",
                                                                   "unpaired_target")},
                     "cases": [{"id": c.get("id"), **{k: c[k] for k in (keys.SOURCE, keys.TARGET, keys.MASK)}}
                               for c in evaluation_cases(spec, cfg["split"])]}
    for name in (s for s in SECTIONS if not args.only or s in args.only):
        params = section_params(name, cfg)
        if recorded_params(state, name) == params:
            logger.info("section %s: done, skipped", name)
            continue
        logger.info("section %s (%.0f s so far)", name, time.perf_counter() - started)
        t0 = time.perf_counter()
        result = run_section(name, bench, cfg)
        if "rows" in result:
            result["rows"] = list(dict.fromkeys(row["key"] for row in result["rows"]))
        state["sections"][name] = {"status": "done", "seconds": round(time.perf_counter() - t0, 1), "params": params,
                                   "finished": round(time.time(), 1), **result}
        save()
        if not args.quick:
            write_report(state, out)
    meta["load_at_end"] = _load()
    save()
    write_report(state, out)
    logger.info("finished in %.0f s; results in %s", time.perf_counter() - started, out)
    return 0


def partial(state: dict[str, Any]) -> bool:
    """Whether some section of ``state`` has not finished."""
    return any(state["sections"].get(s, {}).get("status") != "done" for s in SECTIONS)


def merge(paths: list[str], out: Path) -> int:
    """``--merge``: one claims.json and report in ``out`` from the claims.json of compatible partial runs."""
    states = []
    for path in map(Path, paths):
        if not path.is_file():
            raise SystemExit(f"--merge: {path} does not exist.")
        state = json.loads(path.read_text())
        if "sections" not in state:
            raise SystemExit(f"--merge: {path} was written by an earlier version of this benchmark; run it again.")
        states.append((path.parent.name or str(path), state))
    try:
        merged = merge_states(states)
    except ValueError as err:
        raise SystemExit(f"--merge: {err}") from None
    merged["meta"]["partial"] = partial(merged)
    write_atomic(out / "claims.json", json.dumps(merged, indent=1) + "\n")
    write_report(merged, out)
    logger.info("merged %d run(s) into %s", len(states), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
