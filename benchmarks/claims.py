#!/usr/bin/env python
"""Reproduce DRDD's claims at small scale on the MR->CT phantom, side by side with the baselines.

One command trains every method with the same network family (MONAI ``DiffusionModelUNet``, one preset) and the
same budget per network (``--steps`` x ``--batch``), evaluates them on held-out phantom subjects as 3D volumes in HU
(SynthRAD2023 metrics inside the body mask), and writes ``benchmarks/results/claims.json``, ``claims.md`` and PNG
plots. Results are written after every experiment; ``--resume`` skips finished experiments and reuses trained
networks (kept under ``--work``).

Usage (from the repository root)::

    python benchmarks/claims.py             # full run (about 45 min on 2 CPU cores)
    python benchmarks/claims.py --resume    # continue a partial run
    python benchmarks/claims.py --quick --out /tmp/claims --work /tmp/claims_work   # pipeline smoke test

Experiments (METHOD.md §10.2): ``harmonization`` (Prop. 3.1 MMD), ``methods:s<seed>`` (DRDD unconditional /
source-conditioned denoiser, coupled RDDM, entangled two-network baseline, direct regression), ``no_denoiser``,
``steps``, ``data_eff:f<fraction>``, ``noise:<level>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
if str(_HERE.parent) not in sys.path:
    sys.path.insert(1, str(_HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import drdd_med  # noqa: E402
from claims_lib.data import PhantomData, build_data  # noqa: E402
from claims_lib.evaluate import coupled_sampler, drdd_sampler, evaluate, regression_sampler  # noqa: E402
from claims_lib.harmonize import harmonization  # noqa: E402
from claims_lib.report import write_report  # noqa: E402
from claims_lib.train import TrainConfig, train_stage  # noqa: E402
from drdd_med.networks.drdd_net import DRDDNet  # noqa: E402
from drdd_med.networks.factory import build_coupled_net, build_drdd_net, build_regression_net  # noqa: E402

logger = logging.getLogger("claims")

#: Full-run defaults (sized for ~45 min on 2 CPU cores) and the --quick smoke-test overrides.
DEFAULTS: dict[str, Any] = dict(
    size=32, depth=24, n_train=20, n_eval=6, n_unpaired=20, steps=200, batch=8, lr=1e-3, preset="tiny",
    seeds=[0, 1], fractions=[1.0, 0.5, 0.25, 0.1], step_pairs=[[1, 1], [2, 2], [5, 5], [10, 10]],
    noise_levels=[0.3, 0.5, 0.8, 1.0, 1.3], mmd_levels=[0.0, 0.1, 0.3, 0.5, 0.8, 1.0, 1.3, 2.0], mmd_repeats=3,
    coupled_steps=4,
)
QUICK: dict[str, Any] = dict(
    size=16, depth=10, n_train=4, n_eval=2, n_unpaired=2, steps=2, batch=2, seeds=[0], fractions=[1.0, 0.5],
    step_pairs=[[1, 1], [2, 2]], noise_levels=[0.5, 1.0, 1.3], mmd_levels=[0.0, 0.5, 1.0], mmd_repeats=1,
)
METHODS = ("drdd_unc", "drdd_cond", "coupled", "entangled", "regression")
DATA_EFF_METHODS = ("drdd_unc", "drdd_cond", "coupled", "regression")


def _atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=True) + "\n")
    os.replace(tmp, path)


def _key(role: str, seed: int, fraction: float, level: float) -> str:
    """Name of one trained network, e.g. ``residual:s0:f0.5:n1``."""
    return f"{role}:s{seed}:f{fraction:g}:n{level:g}"


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Runner:
    """Trains (or reloads) the networks the experiments need and evaluates them."""

    def __init__(self, cfg: dict[str, Any], data: PhantomData, state: dict[str, Any], work: Path, resume: bool,
                 save: Callable[[], None]) -> None:
        self.cfg, self.data, self.state, self.work, self.resume, self.save = cfg, data, state, work, resume, save
        self.train_cfg = TrainConfig(steps=cfg["steps"], batch=cfg["batch"], lr=cfg["lr"],
                                     log_every=max(1, min(50, cfg["steps"] // 4)))
        self.models: dict[str, torch.nn.Module] = {}
        perm = np.random.default_rng(1234).permutation(data.n_train_subjects)
        self.subject_order = [int(i) for i in perm]
        self.planned = 0
        self.trained_seconds: list[float] = []

    # ------------------------------------------------------------------ data
    def subjects(self, fraction: float) -> list[int]:
        """Nested subsets: the first round(fraction * n) subjects of one fixed permutation (at least one)."""
        k = max(1, int(round(fraction * len(self.subject_order))))
        return sorted(self.subject_order[:k])

    def pairs(self, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data.paired_subset(self.subjects(fraction))

    # ------------------------------------------------------------------ networks
    def _build(self, role: str, seed: int, level: float, key: str) -> torch.nn.Module:
        torch.manual_seed(zlib.crc32(key.encode()) + seed)
        preset = self.cfg["preset"]
        if role in ("residual", "noise_unc", "noise_cond"):
            return build_drdd_net(2, 1, 1, preset=preset, noise_conditioned=role == "noise_cond", noise_level=level)
        if role in ("coupled", "entangled"):
            return build_coupled_net(2, 1, 1, preset=preset, entangled=role == "entangled")
        return build_regression_net(2, 1, 1, preset=preset)

    def network(self, role: str, seed: int, fraction: float = 1.0, level: float = 1.0) -> torch.nn.Module:
        """The trained network of ``role`` (cached in memory and under ``work/models``)."""
        key = _key(role, seed, fraction, level)
        if key in self.models:
            return self.models[key]
        model = self._build(role, seed, level, key)
        path = self.work / "models" / (key.replace(":", "_") + ".pt")
        if self.resume and path.is_file() and key in self.state["trainings"]:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            logger.info("reused trained %s", key)
        else:
            done = len(self.state["trainings"])
            mean = sum(self.trained_seconds) / len(self.trained_seconds) if self.trained_seconds else float("nan")
            logger.info("training %s (%d of ~%d networks; ~%.0f s each so far)", key, done + 1, self.planned, mean)
            if role == "noise_unc":
                info = train_stage("noise", model, self.data.all_targets(), None, self.train_cfg, seed, level,
                                   label=key)
            else:
                source, target = self.pairs(fraction)
                kind = {"residual": "residual", "noise_cond": "noise", "coupled": "coupled",
                        "entangled": "coupled", "regression": "regression"}[role]
                info = train_stage(kind, model, target, source, self.train_cfg, seed, level,
                                   conditioned=role == "noise_cond", label=key)
            info["training_slices"] = int(self.data.all_targets().shape[0] if role == "noise_unc"
                                          else self.pairs(fraction)[0].shape[0])
            self.trained_seconds.append(info["seconds"])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, path)
            self.state["trainings"][key] = info
            self.save()
        self.models[key] = model
        return model

    def drdd(self, seed: int, fraction: float, level: float, conditioned: bool) -> tuple[DRDDNet, float, float]:
        """(DRDDNet, residual level, denoiser training level): residual net trained at ``level`` on the pairs of
        ``fraction``; unconditional denoiser on all CT (trained at level 1 and reused for levels <= 1, else
        retrained at ``level``); conditional denoiser on the same pairs."""
        residual = self.network("residual", seed, fraction, level).residual_net
        if conditioned:
            noise_level = level
            noise = self.network("noise_cond", seed, fraction, level).noise_net
        else:
            noise_level = 1.0 if level <= 1.0 else level
            noise = self.network("noise_unc", seed, 1.0, noise_level).noise_net
        net = DRDDNet(residual, noise, noise_conditioned=conditioned, noise_level=level, source_channels=1,
                      target_channels=1).eval()
        return net, level, noise_level

    # ------------------------------------------------------------------ methods
    def method(self, method: str, seed: int, fraction: float = 1.0, level: float = 1.0, residual_steps: int = 2,
               noise_steps: int = 2, subtract_noise: bool = False) -> tuple[Callable, dict[str, Any], list[str]]:
        """(sampler, row info, trained-network keys) of one method configuration."""
        info: dict[str, Any] = {"method": method, "seed": seed, "fraction": fraction,
                                "paired_subjects": len(self.subjects(fraction)), "noise_level": level}
        if method in ("drdd_unc", "drdd_cond"):
            net, _, noise_trained = self.drdd(seed, fraction, level, method == "drdd_cond")
            sampler = drdd_sampler(net, level, residual_steps, 0 if subtract_noise else noise_steps, subtract_noise,
                                   noise_trained_level=noise_trained)
            calls = residual_steps + (0 if subtract_noise else noise_steps)
            params = _params(net.residual_net) + (0 if subtract_noise else _params(net.noise_net))
            info.update(residual_steps=residual_steps, noise_steps=0 if subtract_noise else noise_steps,
                        subtract_noise=subtract_noise, denoiser_trained_level=noise_trained)
            keys = [_key("residual", seed, fraction, level),
                    _key("noise_cond", seed, fraction, level) if method == "drdd_cond"
                    else _key("noise_unc", seed, 1.0, noise_trained)]
        elif method in ("coupled", "entangled"):
            net = self.network(method, seed, fraction, level)
            steps = self.cfg["coupled_steps"]
            sampler = coupled_sampler(net, level, steps)
            calls = steps * (2 if method == "entangled" else 1)
            params = _params(net)
            info.update(sampling_steps=steps)
            keys = [_key(method, seed, fraction, level)]
        else:
            net = self.network("regression", seed, fraction)
            sampler, calls, params = regression_sampler(net), 1, _params(net)
            keys = [_key("regression", seed, fraction, 1.0)]
        info.update(network_calls=calls, params=params)
        return sampler, info, keys

    def timing(self, seed: int, repeats: int = 3) -> dict[str, Any]:
        """Sampling cost per slice of each method on the first evaluation volume, after one warm-up: CPU time of
        this process and the best wall time of ``repeats``. Timed on one thread: with several threads on loaded
        cores, OpenMP barrier waits dominate and scatter the timings by 10x."""
        source = self.data.eval_volumes[0].source
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        out = {}
        for method in METHODS:
            sampler, info, _ = self.method(method, seed)
            gen = torch.Generator().manual_seed(0)
            sampler(source, gen)
            best, cpu = float("inf"), []
            for _ in range(repeats):
                start, cpu_start = time.perf_counter(), time.process_time()
                sampler(source, gen)
                best = min(best, time.perf_counter() - start)
                cpu.append(time.process_time() - cpu_start)
            out[method] = {"seconds_per_slice": best / source.shape[0],
                           "cpu_seconds_per_slice": float(np.median(cpu)) / source.shape[0],
                           "network_calls": info["network_calls"], "slices": int(source.shape[0]), "repeats": repeats}
            logger.info("  timing %-10s %.2f ms CPU, %.2f ms wall per slice", method,
                        1e3 * out[method]["cpu_seconds_per_slice"], 1e3 * out[method]["seconds_per_slice"])
        torch.set_num_threads(threads)
        return {"methods": out, "threads": 1}

    # ------------------------------------------------------------------ evaluation rows
    def row(self, method: str, seed: int, fraction: float = 1.0, level: float = 1.0, residual_steps: int = 2,
            noise_steps: int = 2, subtract_noise: bool = False, example: bool = False) -> dict[str, Any]:
        sampler, info, keys = self.method(method, seed, fraction, level, residual_steps, noise_steps, subtract_noise)
        result = evaluate(sampler, self.data.eval_volumes, seed=10_000 + seed, keep_slice=example)
        if example and "example_slice" in result:
            self._save_example(method, result.pop("example_slice"))
        result.pop("example_slice", None)
        train_seconds = sum(self.state["trainings"].get(key, {}).get("seconds", 0.0) for key in keys)
        info.update(train_seconds=round(train_seconds, 1), **result)
        logger.info("  eval %-10s seed %d frac %.2f level %.2f: MAE %.1f HU, PSNR %.2f dB, SSIM %.3f", method, seed,
                    fraction, level, result["mean"]["mae"], result["mean"]["psnr"], result["mean"]["ssim"])
        return info

    def _save_example(self, method: str, sct_slice: np.ndarray) -> None:
        path = self.work / "examples"
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / f"{method}.npy", sct_slice)
        vol = self.data.eval_volumes[0]
        z = vol.ct_hu.shape[2] // 2
        np.save(path / "ct.npy", vol.ct_hu[:, :, z].astype(np.float32))
        np.save(path / "mr.npy", vol.source[z, 0].numpy())
        np.save(path / "mask.npy", vol.mask[:, :, z])


def plan(cfg: dict[str, Any]) -> list[str]:
    """Experiment units in run order (the most important first, so a partial run is still useful)."""
    seeds = cfg["seeds"]
    units = ["harmonization", f"methods:s{seeds[0]}", "no_denoiser", "steps"]
    units += [f"data_eff:f{f:g}" for f in cfg["fractions"] if f < 1.0]
    units += [f"noise:{lv:g}" for lv in cfg["noise_levels"] if lv != 1.0]
    units += [f"methods:s{s}" for s in seeds[1:]]
    return units + ["timing"]


def count_networks(cfg: dict[str, Any]) -> int:
    """Networks the full plan trains (for the progress line)."""
    n_eff = sum(1 for f in cfg["fractions"] if f < 1.0)
    levels = [lv for lv in cfg["noise_levels"] if lv != 1.0]
    return 6 * len(cfg["seeds"]) + 4 * n_eff + len(levels) + sum(1 for lv in levels if lv > 1.0)


def run_unit(unit: str, runner: Runner, cfg: dict[str, Any]) -> dict[str, Any]:
    s0 = cfg["seeds"][0]
    if unit == "harmonization":
        return harmonization(runner.data.source, runner.data.unpaired_target, cfg["mmd_levels"], cfg["mmd_repeats"],
                             seed=0)
    if unit.startswith("methods:s"):
        seed = int(unit.split(":s")[1])
        return {"rows": [runner.row(m, seed, example=seed == s0) for m in METHODS]}
    if unit == "no_denoiser":
        return {"rows": [runner.row("drdd_unc", s0, subtract_noise=True)]}
    if unit == "steps":
        return {"rows": [runner.row("drdd_unc", s0, residual_steps=r, noise_steps=n) for r, n in cfg["step_pairs"]]}
    if unit.startswith("data_eff:f"):
        fraction = float(unit.split(":f")[1])
        return {"rows": [runner.row(m, s0, fraction=fraction) for m in DATA_EFF_METHODS]}
    if unit == "timing":
        return runner.timing(s0)
    if unit.startswith("noise:"):
        level = float(unit.split(":")[1])
        return {"rows": [runner.row("drdd_unc", s0, level=level)]}
    raise ValueError(f"unknown experiment unit {unit!r}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny smoke-test configuration (checks the pipeline only)")
    p.add_argument("--resume", action="store_true", help="skip finished experiments and reuse trained networks")
    p.add_argument("--out", default=str(_HERE / "results"), help="results folder (claims.json, claims.md, PNGs)")
    p.add_argument("--work", default=str(_HERE / "_work" / "claims"), help="trained networks and examples")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--only", nargs="*", default=None, help="run only these experiment units")
    p.add_argument("--report-only", action="store_true", help="rewrite claims.md and the plots from claims.json")
    for key in ("size", "depth", "n_train", "n_eval", "n_unpaired", "steps", "batch"):
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--preset", default=None, choices=["tiny", "small", "paper"])
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--fractions", type=float, nargs="+", default=None)
    p.add_argument("--noise-levels", type=float, nargs="+", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    cfg = dict(DEFAULTS)
    if args.quick:
        cfg.update(QUICK)
    for key in ("size", "depth", "n_train", "n_eval", "n_unpaired", "steps", "batch", "lr", "preset", "seeds",
                "fractions", "noise_levels"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if 1.0 not in cfg["fractions"] or 1.0 not in cfg["noise_levels"]:
        raise ValueError("--fractions and --noise-levels must include 1.0 (the reference configuration).")
    torch.set_num_threads(args.threads)
    out, work = Path(args.out), Path(args.work)
    json_path = out / "claims.json"
    state: dict[str, Any] = {}
    if args.report_only:
        if not json_path.is_file():
            raise ValueError(f"--report-only: {json_path} does not exist; run the benchmark first.")
        write_report(json.loads(json_path.read_text()), out, work)
        return 0
    if args.resume and json_path.is_file():
        state = json.loads(json_path.read_text())
        if state.get("config") != cfg:
            raise ValueError(f"{json_path}: was made with another configuration; rerun without --resume or with "
                             f"the same options (stored: {state.get('config')}).")
    state.setdefault("config", cfg)
    state.setdefault("units", {})
    state.setdefault("trainings", {})
    meta = state.setdefault("meta", {"elapsed_seconds": 0.0})
    if "command" in meta:  # results of a run that stored a single command
        meta.setdefault("commands", []).insert(0, meta.pop("command").strip())
    meta.setdefault("commands", []).append(
        "python benchmarks/claims.py " + " ".join(sys.argv[1:] if argv is None else argv))
    meta.update(torch=torch.__version__, drdd_med=getattr(drdd_med, "__version__", "?"), threads=args.threads,
                cpu=platform.processor() or platform.machine(), quick=bool(args.quick))
    started = time.perf_counter()
    elapsed_before = float(meta.get("elapsed_seconds", 0.0))

    def save() -> None:
        meta["elapsed_seconds"] = round(elapsed_before + time.perf_counter() - started, 1)
        _atomic_json(json_path, state)

    t0 = time.perf_counter()
    data = build_data(cfg["size"], cfg["depth"], cfg["n_train"], cfg["n_eval"], cfg["n_unpaired"], seed=0)
    state["data"] = data.info | {"render_seconds": round(time.perf_counter() - t0, 1)}
    logger.info("phantom data: %s", state["data"])
    runner = Runner(cfg, data, state, work, args.resume, save)
    runner.planned = count_networks(cfg)
    units = plan(cfg)
    if args.only:
        units = [u for u in units if u in args.only]
    for i, unit in enumerate(units):
        if args.resume and state["units"].get(unit, {}).get("status") == "done":
            logger.info("[%d/%d] %s: done, skipped", i + 1, len(units), unit)
            continue
        logger.info("[%d/%d] experiment %s (%.0f s so far)", i + 1, len(units), unit,
                    elapsed_before + time.perf_counter() - started)
        u0 = time.perf_counter()
        result = run_unit(unit, runner, cfg)
        state["units"][unit] = {"status": "done", "seconds": round(time.perf_counter() - u0, 1), **result}
        meta["partial"] = any(state["units"].get(u, {}).get("status") != "done" for u in plan(cfg))
        save()
        if not args.quick:
            write_report(state, out, work)
    meta["partial"] = any(state["units"].get(u, {}).get("status") != "done" for u in plan(cfg))
    save()
    write_report(state, out, work)
    logger.info("finished in %.0f s (total %.0f s); results in %s", time.perf_counter() - started,
                meta["elapsed_seconds"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
