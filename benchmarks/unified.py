#!/usr/bin/env python
"""One DRDD model for T1w MR, T2w MR and CBCT against one specialist per domain, at an equal total budget.

Every model is trained by the bundle itself (``monai.bundle.run("training", config_file="bundles/drdd/train.json",
...)``, one output folder per training, size-only overrides) on the phantom rendered in the three domains
(``write_phantom_dataset(domains=("t1w", "t2w", "cbct"))``): the unified model on every pair of the spec, each
specialist on its own domain's pairs, all on every CT. A specialist trains ``epochs x epoch_length`` iterations per
stage and the unified model ``n_domains`` times as many, so the specialists' iterations sum to the unified model's.
Each model is sampled by ``SCTPredictor`` and scored by ``drdd_med.workflows.report.evaluate_predictor`` on the
test split (native grid, HU, inside the body mask), per domain: MAE, PSNR (SynthRAD2025), SSIM (SynthRAD2023) and
bone MAE. The harmonisation measure is the MMD² between the source domains' slice distributions, clean and after
adding Gaussian noise at the model's noise level (the state the residual stage starts from).

Usage (from the repository root)::

    python benchmarks/unified.py --epochs 8 --seeds 0 1 --threads 2     # full run (hours on 2 CPU cores)
    python benchmarks/unified.py --quick --out /tmp/u --work /tmp/uw     # 32x32x16 phantom, tiny nets, a minute

Results: ``<out>/unified.json`` (every number, per case and per training), ``unified.md`` and one montage per
domain, ``unified_<domain>.png`` (source | sCT | CT | |error| of the unified model, first seed, first test case).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
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
from claims import TRAIN_CONFIG, Recorder, _load, add_run_options  # noqa: E402
from claims_lib.harmonize import harmonization, spec_slices  # noqa: E402
from drdd_med import keys, runtime  # noqa: E402
from drdd_med.data.domains import DOMAIN_MODALITY, DOMAINS  # noqa: E402
from drdd_med.io.atomic import write_atomic  # noqa: E402

logger = logging.getLogger("unified")

#: Scored metrics: (evaluate_cases key, column title, decimals).
METRICS = (("mae", "MAE HU", 1), ("psnr_2025", "PSNR dB", 2), ("ssim_2023", "SSIM", 3), ("mae_bone", "bone MAE HU", 1))
#: The unified model passes when its MAE is at most this much above the specialist's, per domain.
TOLERANCE = 0.10
#: Settings of every training: the paper's unconditional denoiser, so that the noise stage is one CT prior that
#: trains on each CT once and serves every domain.
COMMON = {"noise_conditioned": False}
FULL: dict[str, Any] = dict(seeds=[0, 1], epochs=8, epoch_length=100, mmd_repeats=3, bundle={}, phantom={})
QUICK: dict[str, Any] = dict(
    seeds=[0], epochs=1, epoch_length=2, mmd_repeats=1,
    bundle={"network_preset": "tiny", "warmup_iterations": 1, "ema_decay": 0.5, "batch_size": 1,
            "samples_per_volume": 2, "patch_size": [32, 32], "checkpoint_interval": 2, "log_interval": 2},
    phantom={"subjects": 4, "unpaired": 2, "shape": [32, 32, 16], "spacing_mm": [6.6, 6.6, 10.5]},
)


def budget(domains: list[str], epochs: int, epoch_length: int) -> dict[str, dict[str, int]]:
    """Training settings per model: each specialist ``epoch_length``, the unified model ``len(domains)`` times that."""
    plan = {"unified": {"epochs": epochs, "epoch_length": epoch_length * len(domains)}}
    plan.update({d: {"epochs": epochs, "epoch_length": epoch_length} for d in domains})
    return plan


def domain_spec(spec: Any, domain: str, path: Path) -> Path:
    """A spec of ``spec``'s items of one domain (every split) and all its CT-only subjects, written to ``path``."""
    from drdd_med.workflows.data import norm_dict

    raw = {"name": f"{spec.name}, {domain} only", "description": spec.description,
           "source": {"modality": DOMAIN_MODALITY[domain], "normalize": norm_dict(spec.source_norm_for(
               {keys.DOMAIN: domain}))},
           "target": {"modality": spec.target_modality, "normalize": norm_dict(spec.target_norm)},
           **{split: [item for item in spec.items(split) if item.get(keys.DOMAIN) == domain]
              for split in ("training", "validation", "test")},
           "unpaired_target": spec.items("unpaired_target")}
    write_atomic(path, json.dumps(raw, indent=1) + "\n")
    return path


def train(name: str, spec_path: Path, settings: dict[str, Any], work: Path, args: argparse.Namespace) -> dict:
    """One bundle training in ``<work>/runs/<name>`` (a fresh folder); returns its record."""
    from monai.bundle import run

    out = work / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    logger.info("training %s on %s: %s", name, spec_path.name, settings)
    load_before, start, cpu_start = _load(), time.time(), time.process_time()
    run("training", config_file=str(TRAIN_CONFIG), logging_file=False, output_dir=str(out),
        dataset_dir=str(work / "data"), datalist=str(spec_path), threads=args.threads,
        device=f"$drdd_med.runtime.resolve_device({args.device!r})", time_budget_minutes=0, **settings)
    iterations = {p.name.replace("_checkpoint.pt", ""): int(torch.load(p, weights_only=True)["trainer"]["iteration"])
                  for p in sorted((out / "models").glob("*_checkpoint.pt"))}
    return {"spec": spec_path.name, "settings": settings, "iterations": iterations, "output_dir": str(out),
            "run_seconds": round(time.time() - start, 1), "cpu_seconds": round(time.process_time() - cpu_start, 1),
            "threads": torch.get_num_threads(), "load_before": load_before, "load_after": _load()}


def score(name: str, spec: Any, work: Path, args: argparse.Namespace, montage: bool) -> dict[str, Any]:
    """Score a model on ``spec``'s test split with ``evaluate_predictor``: per-case rows and per-domain means."""
    from drdd_med.workflows.data import evaluation_cases
    from drdd_med.workflows.predictor import SCTPredictor
    from drdd_med.workflows.report import evaluate_predictor

    predictor = SCTPredictor.from_bundle(work / "runs" / name, device=args.device, threads=args.threads, seed=0)
    out = work / "eval" / name
    cases = evaluation_cases(spec, "test")
    recorder = Recorder(predictor, cases, out / "sct")  # keeps every sCT as NIfTI, named by case id
    result = evaluate_predictor(recorder, spec, out, split="test", baselines=False, montage=montage)
    domain_of = {case["id"]: case[keys.DOMAIN] for case in cases}
    rows = [{**row, "domain": domain_of[row["case"]]} for row in result["cases"]]
    per_domain = {d: {m: float(np.mean([r[m] for r in rows if r["domain"] == d])) for m, _, _ in METRICS}
                  for d in dict.fromkeys(r["domain"] for r in rows)}
    return {"cases": rows, "domains": per_domain, "files": str(out),
            "sample_seconds_per_case": float(np.mean([c[0] for c in recorder.costs]))}


def harmonisation(spec: Any, domains: list[str], noise_level: float, repeats: int) -> dict[str, Any]:
    """MMD² between the source domains' training slices, clean and at the model's noise level, per pair."""
    slices = {d: spec_slices(items, keys.SOURCE, spec.source_norm_for(items[0]))
              for d in domains for items in [[i for i in spec.items("training") if i[keys.DOMAIN] == d]]}
    levels = [0.0, noise_level]
    pairs = {}
    for a, b in itertools.combinations(domains, 2):
        result = harmonization(slices[a], slices[b], levels, repeats, seed=0)
        pairs[f"{a}-{b}"] = {"mmd2": result["mmd2_mr_ct"], "mmd2_std": result["mmd2_mr_ct_std"]}
    return {"levels": levels, "noise_level": noise_level, "repeats": repeats, "pairs": pairs,
            "slices": {d: int(s.shape[0]) for d, s in slices.items()}}


def summarise(state: dict[str, Any]) -> dict[str, Any]:
    """Per domain: mean and std over seeds of the unified model's and the specialist's per-domain means."""
    out = {}
    for domain in state["domains"]:
        entry: dict[str, Any] = {}
        for model in ("unified", domain):
            runs = [state["scores"][f"{model}_s{s}"]["domains"][domain] for s in state["config"]["seeds"]]
            entry["unified" if model == "unified" else "specialist"] = {
                m: {"mean": float(np.mean([r[m] for r in runs])), "std": float(np.std([r[m] for r in runs]))}
                for m, _, _ in METRICS}
        ratio = entry["unified"]["mae"]["mean"] / entry["specialist"]["mae"]["mean"]
        entry.update(mae_ratio=ratio, within_tolerance=bool(ratio <= 1.0 + TOLERANCE))
        out[domain] = entry
    return out


def _cell(stats: dict[str, float], digits: int, seeds: int) -> str:
    text = f"{stats['mean']:.{digits}f}"
    return text + (f" ± {stats['std']:.{digits}f}" if seeds > 1 else "")


def write_report(state: dict[str, Any], out: Path) -> None:
    """unified.md from the state, and a montage per domain of the unified model (first seed)."""
    cfg, summary, seeds = state["config"], state["summary"], len(state["config"]["seeds"])
    plan = state["budget"]
    lines = ["# Unified translation: one model for T1w MR, T2w MR and CBCT", ""]
    if state["meta"]["quick"]:
        lines += ["**QUICK MODE**: tiny networks and a few iterations; the numbers mean nothing.", ""]
    unified_it = plan["unified"]["epochs"] * plan["unified"]["epoch_length"]
    specialist_it = plan[state["domains"][0]]["epochs"] * plan[state["domains"][0]]["epoch_length"]
    lines += [f"Phantom test split, {seeds} seed(s) (mean ± std over seeds of the per-domain means). "
              f"Budget per stage: unified {unified_it} iterations; each of the {len(state['domains'])} specialists "
              f"{specialist_it} (sum {specialist_it * len(state['domains'])}). "
              f"Overrides: {json.dumps(state['overrides'])}.", ""]
    header = " | ".join(f"{title} unified / specialist" for _, title, _ in METRICS)
    lines += [f"| domain | {header} | unified MAE / specialist | within {TOLERANCE:.0%} |",
              "|---" * (len(METRICS) + 3) + "|"]
    for domain, entry in summary.items():
        cells = [f"{_cell(entry['unified'][m], d, seeds)} / {_cell(entry['specialist'][m], d, seeds)}"
                 for m, _, d in METRICS]
        lines.append(f"| {domain} | " + " | ".join(cells) + f" | {entry['mae_ratio']:.3f} | "
                     f"{'yes' if entry['within_tolerance'] else 'no'} |")
    harm = state["harmonisation"]
    lines += ["", f"Harmonisation: MMD² between the source domains' training slices in [-1, 1] (Gaussian kernel, "
              f"median bandwidth; {harm['repeats']} noise draw(s)), clean and with noise of the model's level "
              f"σ_n = {harm['noise_level']:g} added.", "", "| pair | clean | at σ_n | ratio |", "|---|---|---|---|"]
    for pair, values in harm["pairs"].items():
        clean, noisy = values["mmd2"]
        lines.append(f"| {pair} | {clean:.4f} | {noisy:.4f} | {noisy / clean if clean else float('nan'):.3f} |")
    lines += ["", "| training | spec | iterations | wall s | CPU s |", "|---|---|---|---|---|"]
    for name, record in state["trainings"].items():
        its = " + ".join(f"{k} {v}" for k, v in record["iterations"].items())
        seconds = f"{record['run_seconds']:.0f} | {record['cpu_seconds']:.0f}"
        lines.append(f"| {name} | {record['spec']} | {its} | {seconds} |")
    lines += ["", f"Command: `{state['meta']['command']}`; {state['meta']['threads']} thread(s) on "
              f"{state['meta']['cpu']}, {state['meta']['elapsed_seconds']:.0f} s in all.", ""]
    write_atomic(out / "unified.md", "\n".join(lines))
    first = state["scores"][f"unified_s{cfg['seeds'][0]}"]
    for domain in state["domains"]:
        case = next(r["case"] for r in first["cases"] if r["domain"] == domain)
        shutil.copyfile(Path(first["files"]) / "montages" / f"{case}.png", out / f"unified_{domain}.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="32x32x16 phantom, tiny nets, 2 iterations per specialist")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1; --quick: 0)")
    p.add_argument("--epochs", type=int, help="epochs per stage of every model (default 8)")
    p.add_argument("--epoch-length", type=int, help="a specialist's iterations per epoch (default 100); the unified "
                   "model's epochs are as many times longer as there are domains")
    p.add_argument("--domains", nargs="+", choices=DOMAINS, default=list(DOMAINS), help="source domains")
    p.add_argument("--out", default=str(_HERE / "results"), help="unified.json, unified.md, unified_<domain>.png")
    p.add_argument("--work", default=str(_HERE / "_work" / "unified"), help="phantom, trained bundles, sCT files")
    add_run_options(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from monai.bundle import ConfigParser

    from drdd_med.data.phantom import write_phantom_dataset
    from drdd_med.workflows.data import prepare_spec

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    cfg = json.loads(json.dumps(QUICK if args.quick else FULL))
    cfg.update({k: v for k, v in (("seeds", args.seeds), ("epochs", args.epochs),
                                  ("epoch_length", args.epoch_length)) if v is not None})
    cfg["bundle"].update(dict(args.set))
    cfg["phantom"].update(dict(args.phantom))
    out, work = Path(args.out), Path(args.work)
    defaults = ConfigParser.load_config_file(str(TRAIN_CONFIG))
    overrides = {**COMMON, **cfg["bundle"]}
    device = runtime.resolve_device(args.device)
    runtime.configure_threads(args.threads)
    started = time.perf_counter()
    phantom = {**defaults["phantom"], **cfg["phantom"], "domains": list(args.domains)}
    spec = prepare_spec(write_phantom_dataset(work / "data" / "unified", **phantom))
    specs = {"unified": spec.path, **{d: domain_spec(spec, d, work / "data" / f"{d}.json") for d in args.domains}}
    plan = budget(list(args.domains), cfg["epochs"], cfg["epoch_length"])
    state: dict[str, Any] = {"config": cfg, "domains": list(args.domains), "budget": plan, "overrides": overrides,
                             "phantom": phantom, "trainings": {}, "scores": {}}
    state["meta"] = {"quick": args.quick, "command": "python benchmarks/unified.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "torch": torch.__version__, "drdd_med": drdd_med.__version__,
        "threads": args.threads, "cpu": platform.processor() or platform.machine(), "device": str(device),
        "load_at_start": _load()}
    noise_level = float(overrides.get("noise_level", defaults["noise_level"]))
    state["harmonisation"] = harmonisation(spec, list(args.domains), noise_level, cfg["mmd_repeats"])
    for seed in cfg["seeds"]:
        for model, spec_path in specs.items():
            name = f"{model}_s{seed}"
            settings = {**overrides, **plan[model], "seed": seed}
            state["trainings"][name] = train(name, spec_path, settings, work, args)
            model_spec = spec if model == "unified" else prepare_spec(spec_path)
            montage = model == "unified" and seed == cfg["seeds"][0]
            state["scores"][name] = score(name, model_spec, work, args, montage)
    state["summary"] = summarise(state)
    state["meta"].update(elapsed_seconds=round(time.perf_counter() - started, 1), load_at_end=_load())
    write_atomic(out / "unified.json", json.dumps(state, indent=1) + "\n")
    write_report(state, out)
    logger.info("finished in %.0f s; results in %s", time.perf_counter() - started, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
