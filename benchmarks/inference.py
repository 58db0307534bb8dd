"""Inference benchmark: DRDD whole-volume sampling vs plain DDIM (50 steps) / DDPM (1000 steps), CPU or GPU.

Scenarios (each runs in its own subprocess, so peak RSS is that scenario's alone):

- ``drdd-2d``: a 2D ``small`` DRDD model, 2 + 2 steps, slice batches of 16, measured through the full
  :class:`~drdd_med.workflows.predictor.SCTPredictor` pipeline (NIfTI load, normalisation, sampling, inversion to
  the native grid, int16 NIfTI write);
- ``drdd-3d``: a 3D ``tiny`` DRDD model, 2 + 2 steps, Gaussian-blended sliding windows (overlap 0.25), same pipeline;
- ``ddim50-*`` / ``ddpm1000-*``: the peer reference, a conditional MONAI ``DiffusionModelUNet`` of the same preset
  (x_t and MR concatenated, one network call per step) driven by MONAI's ``DDIMScheduler`` (50 steps) or
  ``DDPMScheduler`` (1000 steps) over the same volume. The first steps are timed and the per-step time is
  extrapolated to the full step count (marked ``extrapolated``); their totals exclude writing the output.

Volume sizes (2D small / 3D tiny, window):

- ``--quick``: 128x128x8 / 64x64x32, window 32^3 (about 1-2 min on 2 busy CPU cores);
- default: 256x256x8 / 96x96x48, window 64x64x48 (about 5 min on 2 busy CPU cores);
- ``--full``: 256x256x32 / 160^3, window 64^3 (the 3D part alone is tens of minutes on CPU; use a GPU);
- ``--large`` adds a 512x512x300 volume with a single network evaluation (1 residual step, 0 noise steps), once
  with an oracle network (``drdd-2d-large-oracle``: the pipeline's own memory and time, no network cost) and once
  with the 2D ``tiny`` model (``drdd-2d-large``: slow on CPU, see the README): the memory bound check. Peak RSS
  does not depend on the step count (the sampler keeps a fixed set of whole-volume tensors and runs the network on
  ``slice_batch`` slices at a time); the time does.

For every row: total seconds, seconds inside network forward calls, their ratio (pipeline overhead; goal <= 1.15),
seconds per slice, and peak resident memory. Networks are untrained (timing does not depend on the weights).

Usage::

    python benchmarks/inference.py [--quick | --full] [--large] [--device cuda] [--only drdd-2d peer-2d]

Writes ``benchmarks/results/inference.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- worker side
class NetworkTimer:
    """Wraps a module's ``forward`` and accumulates wall time spent inside it (synchronising CUDA)."""

    def __init__(self, module: Any, device: Any) -> None:
        import torch

        self.seconds, self.calls = 0.0, 0
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        inner = module.forward

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._sync()
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            self._sync()
            self.seconds += time.perf_counter() - start
            self.calls += 1
            return out

        module.forward = timed


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    scale = 1.0 / 1024 if sys.platform != "darwin" else 1.0 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _mr_volume(shape: list[int], seed: int = 0) -> Any:
    """A smooth head-like MR test volume (float32): ellipsoid body, inner structure, mild noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    radius = sum((g / s) ** 2 for g, s in zip(grids, (0.8, 0.9, 0.85)))
    volume = np.where(radius < 1, 600.0 + 300.0 * np.cos(6 * grids[0]) * np.sin(4 * grids[1]), 20.0)
    volume += rng.normal(0, 15, size=shape).astype(np.float32)
    return volume.astype(np.float32)


def _write_input(shape: list[int], folder: Path) -> Path:
    import nibabel as nib
    import numpy as np

    path = folder / f"mr_{'x'.join(map(str, shape))}.nii"
    if not path.exists():
        affine = np.diag([-0.9, -0.9, 1.5, 1.0])  # LPS-like flips: the pipeline must reorient and invert
        nib.save(nib.Nifti1Image(_mr_volume(shape).astype(np.int16), affine), path)
    return path


def run_drdd(spec: dict[str, Any]) -> dict[str, Any]:
    """Full predictor pipeline on a NIfTI file; returns timings."""
    import torch

    from drdd_med.workflows.model_config import ModelConfig
    from drdd_med.workflows.predictor import SCTPredictor

    torch.manual_seed(0)
    config = ModelConfig(mode=spec["mode"], preset=spec["preset"], roi_size=spec.get("roi_size", [64, 64, 64]),
                         residual_steps=spec.get("steps", [2, 2])[0], noise_steps=spec.get("steps", [2, 2])[1])
    if spec["preset"] == "oracle":  # no network cost: isolates the pipeline's own memory and time
        from drdd_med.networks.oracle import oracle_drdd_net

        network = oracle_drdd_net(1, target_fn=lambda anchor: anchor)
        config.preset = "tiny"
    else:
        network = config.build_network()
    options = {"slice_batch": spec["slice_batch"]} if spec["mode"] != "3d" else {"sw_batch_size": spec["sw_batch"]}
    predictor = SCTPredictor(network, config, device=spec["device"], **options)
    timer = NetworkTimer(predictor.network, predictor.device)
    path = Path(spec["input"])
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    result = predictor.predict(path)
    predictor.save_nifti(result, Path(spec["work"]) / "out", path.stem)
    total = time.perf_counter() - start
    return {"total_s": total, "network_s": timer.seconds, "network_calls": timer.calls,
            "evaluations": sum(spec.get("steps", [2, 2])), "extrapolated": False, "rss_after_import_mb": rss_before}


def run_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """Conditional DDIM-50 / DDPM-1000 with MONAI schedulers over the whole volume, extrapolated from timed steps.

    Both samplers call the network once per step on the same inputs, so the network time of a step is measured once
    (``timed_steps`` real DDIM steps); the scheduler's own ``step`` is timed separately for DDIM and DDPM.
    """
    import nibabel as nib
    import torch
    from monai.inferers import SlidingWindowInferer
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    from drdd_med.networks.factory import PRESETS, build_unet

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    spatial_dims = 3 if spec["mode"] == "3d" else 2
    unet = build_unet(spatial_dims, 2, 1, **PRESETS[spec["preset"]]["residual"]).to(device).eval()
    timer = NetworkTimer(unet, device)
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    mr = torch.from_numpy(nib.load(spec["input"]).get_fdata(dtype="float32"))
    mr = (mr / mr.max() * 2 - 1)[None, None].to(device)
    x = torch.randn_like(mr)
    load_s = time.perf_counter() - start

    def epsilon(x: torch.Tensor, t: int) -> torch.Tensor:
        t_batch = torch.full((1,), t, device=device)
        if spatial_dims == 2:  # axial slice batches, as the DRDD 2D path
            xs, ms = x[0].permute(3, 0, 1, 2), mr[0].permute(3, 0, 1, 2)
            out = torch.empty_like(xs)
            for s in range(0, xs.shape[0], spec["slice_batch"]):
                sl = slice(s, s + spec["slice_batch"])
                out[sl] = unet(torch.cat([xs[sl], ms[sl]], 1), timesteps=t_batch.expand(xs[sl].shape[0]))
            return out.permute(1, 2, 3, 0)[None]
        window = SlidingWindowInferer(spec["roi_size"], sw_batch_size=spec["sw_batch"], overlap=0.25, mode="gaussian",
                                      progress=False)
        return window(torch.cat([x, mr], 1), lambda w: unet(w, timesteps=t_batch.expand(w.shape[0])))

    ddim, ddpm = DDIMScheduler(1000), DDPMScheduler(1000)
    ddim.set_timesteps(50)
    ddpm.set_timesteps(1000)
    step_s = {"ddim": 0.0, "ddpm": 0.0}
    loop_start = time.perf_counter()
    with torch.no_grad():
        for t in ddim.timesteps[: spec["timed_steps"]]:
            eps = epsilon(x, int(t))
            for name, sched in (("ddpm", ddpm), ("ddim", ddim)):  # DDIM last: its state continues the trajectory
                tic = time.perf_counter()
                new_x, _ = sched.step(eps, int(t), x)
                step_s[name] += time.perf_counter() - tic
            x = new_x
    loop_s = time.perf_counter() - loop_start
    n = spec["timed_steps"]
    network_step = timer.seconds / n
    other_step = (loop_s - timer.seconds - step_s["ddim"] - step_s["ddpm"]) / n  # slicing, concatenation, blending
    rows = []
    for name, steps in (("ddim", 50), ("ddpm", 1000)):
        total = load_s + steps * (network_step + other_step + step_s[name] / n)
        rows.append({"sampler": name, "total_s": total, "network_s": steps * network_step, "evaluations": steps,
                     "network_calls": timer.calls // n * steps, "extrapolated": True, "timed_steps": n})
    return {"peers": rows, "rss_after_import_mb": rss_before}


def worker(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, str(REPO))
    result = run_drdd(spec) if spec["sampler"] == "drdd" else run_peer(spec)
    result["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------------------- driver side
#: (2D shape, 3D shape, 3D window) per size; 2D uses the small preset, 3D the tiny preset.
SIZES = {
    "quick": ([128, 128, 8], [64, 64, 32], [32, 32, 32]),
    "default": ([256, 256, 8], [96, 96, 48], [64, 64, 48]),
    "full": ([256, 256, 32], [160, 160, 160], [64, 64, 64]),
}


def scenarios(size: str, large: bool, device: str, threads: int) -> list[dict[str, Any]]:
    """Scenario specs; ``peer-*`` scenarios yield one DDIM-50 and one DDPM-1000 row each."""
    shape_2d, shape_3d, roi_3d = SIZES[size]
    common = {"device": device, "threads": threads}
    two_d = {**common, "mode": "2d", "preset": "small", "shape": shape_2d, "slice_batch": 16}
    three_d = {**common, "mode": "3d", "preset": "tiny", "shape": shape_3d, "roi_size": roi_3d, "sw_batch": 2}
    out = [
        {**two_d, "name": "drdd-2d", "sampler": "drdd"},
        {**two_d, "name": "peer-2d", "sampler": "peer", "timed_steps": 2},
        {**three_d, "name": "drdd-3d", "sampler": "drdd"},
        {**three_d, "name": "peer-3d", "sampler": "peer", "timed_steps": 1},
    ]
    if large:  # memory check: the step count does not change the peak (a fixed set of whole-volume tensors)
        large = {**common, "sampler": "drdd", "mode": "2d", "shape": [512, 512, 300], "slice_batch": 16,
                 "steps": [1, 0]}
        out.append({**large, "name": "drdd-2d-large-oracle", "preset": "oracle"})
        out.append({**large, "name": "drdd-2d-large", "preset": "tiny"})
    return out


def run_scenario(spec: dict[str, Any], work: Path, timeout_s: float) -> list[dict[str, Any]]:
    """Run one scenario in a fresh interpreter (its own peak RSS); returns its table rows."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # The input is generated in its own process: Linux carries a parent's peak RSS into a forked child's ru_maxrss,
    # so a driver that had built a large volume would inflate every later scenario's peak.
    maker = subprocess.run([sys.executable, __file__, "--make-input", json.dumps([spec["shape"], str(work)])],
                           capture_output=True, text=True, env=env, timeout=timeout_s, check=True)
    spec = {**spec, "input": maker.stdout.strip().splitlines()[-1], "work": str(work)}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=timeout_s)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scenario {spec['name']} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    base = {"mode": spec["mode"], "preset": spec["preset"], "shape": spec["shape"],
            "peak_rss_mb": result["peak_rss_mb"], "rss_after_import_mb": result["rss_after_import_mb"]}
    if spec["mode"] == "3d":
        base["roi_size"] = spec["roi_size"]
    runs = result["peers"] if "peers" in result else [{**result, "sampler": "drdd"}]
    rows = []
    for run in runs:
        name = spec["name"] if run["sampler"] == "drdd" else f"{run['sampler']}{run['evaluations']}-{spec['mode']}"
        row = {"name": name, "scenario": spec["name"], **base, **{k: v for k, v in run.items() if k not in base}}
        row["overhead_ratio"] = row["total_s"] / max(row["network_s"], 1e-9)
        row["s_per_slice"] = row["total_s"] / spec["shape"][2]
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| scenario | model | volume | network evals | total s | network s | total/network | s/slice | "
            "peak RSS MB | RSS above start MB |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        star = " (extrap.)" if r["extrapolated"] else ""
        volume = "x".join(map(str, r["shape"]))
        lines.append(f"| {r['name']} | {r['mode']} {r['preset']} | {volume} | {r['evaluations']} "
                     f"| {r['total_s']:.1f}{star} | {r['network_s']:.1f} | {r['overhead_ratio']:.3f} | "
                     f"{r['s_per_slice']:.3f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['peak_rss_mb'] - r['rss_after_import_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small volumes (smoke run, about 1 min)")
    size.add_argument("--full", action="store_true",
                      help="256x256x32 (2D) and 160^3 (3D) volumes: tens of minutes on 2 CPU cores; minutes on a GPU")
    parser.add_argument("--large", action="store_true", help="also a 512 x 512 x 300 volume with a 2D tiny model")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names to run (default: all)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default: {RESULTS})")
    parser.add_argument("--timeout", type=float, default=1800, help="per-scenario timeout, seconds")
    parser.add_argument("--append", action="store_true",
                        help="keep the other scenarios' rows of an existing --out file (replace rows run again)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--make-input", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make_input:
        shape, folder = json.loads(args.make_input)
        print(_write_input(shape, Path(folder)))
        return 0
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    size = "quick" if args.quick else "full" if args.full else "default"
    report = {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "device": args.device, "threads": args.threads,
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "size": size,
              "load_average_1min_at_start": os.getloadavg()[0],
              "notes": "Untrained networks (timing only). DRDD: full SCTPredictor pipeline (load, normalise, sample, "
                       "invert, write int16 NIfTI). DDIM/DDPM: load + network + scheduler loop, timed on the first "
                       "steps and extrapolated linearly to the full step count. 2D: small preset; 3D: tiny preset.",
              "results": [], "failed": []}
    if args.append and args.out.is_file():
        previous = json.loads(args.out.read_text())
        names = {spec["name"] for spec in scenarios(size, args.large, args.device, args.threads)
                 if not args.only or spec["name"] in args.only}
        report["results"] = [r for r in previous.get("results", []) if r.get("scenario", r["name"]) not in names]
    with tempfile.TemporaryDirectory(prefix="drdd_bench_") as work:
        for spec in scenarios(size, args.large, args.device, args.threads):
            if args.only and spec["name"] not in args.only:
                continue
            print(f"running {spec['name']} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            try:
                report["results"] += run_scenario(spec, Path(work), args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # keep the other scenarios' numbers
                report["failed"].append({"name": spec["name"], "problem": str(exc)[-500:]})
                print(f"  {spec['name']} failed: {exc}", file=sys.stderr, flush=True)
            print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            report["table"] = markdown(report["results"])
            _write_report(report, args.out)  # after every scenario, so an interrupted run keeps its numbers
    print(report["table"])
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 1 if report["failed"] else 0


def _write_report(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    sys.exit(main())
