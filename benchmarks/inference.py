"""Inference benchmark: the ``drdd-med translate`` pipeline at realistic sizes, bf16 vs fp32, DRDD 2 + 2 vs DDIM-50
vs one network call (the cost of one-call regression with the same network), CPU or GPU.

Scenarios (each in its own subprocess, so peak RSS is that scenario's alone; ``--threads`` compute threads):

- ``drdd-<preset>-<precision>``: a 2D DRDD model, 2 + 2 steps, measured through the full
  :class:`~drdd_med.workflows.predictor.SCTPredictor` pipeline (NIfTI load, normalisation, sampling, inversion to
  the native grid, int16 NIfTI write) with the predictor's defaults (cache-sized slice batches, channels-last on CPU);
- ``onecall-<preset>``: the same pipeline with 1 residual step and 0 noise steps: one network evaluation over the
  volume, which is what a one-call regression U-Net of the same size costs;
- ``ddim50-*``: the peer reference, a conditional MONAI ``DiffusionModelUNet`` of the same preset driven by MONAI's
  ``DDIMScheduler`` (50 steps) over the same volume; the first steps are timed and extrapolated (``extrapolated``);
- ``pipeline-oracle``: networks that predict zeros (no network cost; an oracle for sCT = source), 1 + 0 steps: the
  pipeline's own time and memory.

Volumes: ``head`` 256x256x150 (default) and, with ``--pelvis``, 512x512x200. ``--quick`` uses 128x128x16 (CI smoke).
``--presets`` chooses the presets (default: ``lean`` and the previous default ``compact``); ``paper`` only makes
sense on a GPU.

For every row: total seconds, seconds inside network forward calls, their ratio (pipeline overhead; goal <= 1.15),
seconds per slice, and peak resident memory. Networks are untrained (timing does not depend on the weights). The
report records the CPU model, its bf16/AMX flags and the load average before and after every scenario.

Usage::

    python benchmarks/inference.py [--quick] [--pelvis] [--presets lean compact] [--device cuda] [--only NAME ...]

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


def _pipeline_only_network(config: Any) -> Any:
    """A DRDDNet of config's channels whose two networks return zeros at no cost: the sCT is the source anchor."""
    import torch

    from drdd_med.networks.drdd_net import DRDDNet

    class Zeros(torch.nn.Module):
        def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x[:, :config.target_channels])

    return DRDDNet(Zeros(), Zeros(), divisor=1, source_channels=config.network_source_channels,
                   target_channels=config.target_channels)


def run_drdd(spec: dict[str, Any]) -> dict[str, Any]:
    """Full predictor pipeline on a NIfTI file; returns timings."""
    import torch

    from drdd_med.workflows.model_config import ModelConfig
    from drdd_med.workflows.predictor import SCTPredictor

    torch.manual_seed(0)
    config = ModelConfig(mode=spec["mode"], preset=spec["preset"], roi_size=spec.get("roi_size", [64, 64, 64]),
                         residual_steps=spec.get("steps", [2, 2])[0], noise_steps=spec.get("steps", [2, 2])[1])
    if spec["preset"] == "oracle":  # no network cost: isolates the pipeline's own memory and time
        config.preset = "tiny"
        network = _pipeline_only_network(config)
    else:
        network = config.build_network()
    predictor = SCTPredictor(network, config, device=spec["device"], precision=spec.get("precision", "auto"),
                             threads=spec["threads"])
    timer = NetworkTimer(predictor.network, predictor.device)
    path = Path(spec["input"])
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    result = predictor.predict(path)
    predictor.save_nifti(result, Path(spec["work"]) / "out", path.stem)
    total = time.perf_counter() - start
    return {"total_s": total, "network_s": timer.seconds, "network_calls": timer.calls,
            "evaluations": sum(spec.get("steps", [2, 2])), "extrapolated": False, "rss_after_import_mb": rss_before,
            "precision": predictor.precision}


def run_peer(spec: dict[str, Any]) -> dict[str, Any]:
    """Conditional DDIM-50 / DDPM-1000 with MONAI schedulers over the whole volume, extrapolated from timed steps.

    Both samplers call the network once per step on the same inputs, so the network time of a step is measured once
    (``timed_steps`` real DDIM steps); the scheduler's own ``step`` is timed separately for DDIM and DDPM.
    """
    import nibabel as nib
    import torch
    from monai.inferers import SlidingWindowInferer
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    from drdd_med import runtime
    from drdd_med.inferers.volume import slices_per_call, uses_channels_last
    from drdd_med.networks.factory import PRESETS, build_unet

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    spatial_dims = 3 if spec["mode"] == "3d" else 2
    runtime.configure_threads(spec["threads"])
    precision = runtime.resolve_precision(spec.get("precision", "auto"), device)
    unet = build_unet(spatial_dims, 2, 1, **PRESETS[spec["preset"]]["residual"]).to(device).eval()
    # the same slice batch and memory format as the DRDD path, so that the comparison is of samplers only
    channels_last = uses_channels_last(spec["mode"], device)
    if channels_last:
        unet = unet.to(memory_format=torch.channels_last)
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
            batch = slices_per_call(xs.shape[2], xs.shape[3], device)
            for s in range(0, xs.shape[0], batch):
                sl = slice(s, s + batch)
                inputs = torch.cat([xs[sl], ms[sl]], 1)
                if channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                with runtime.autocast(device, precision):
                    out[sl] = unet(inputs, timesteps=t_batch.expand(xs[sl].shape[0])).float()
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
    for name, steps in (("ddim", 50),):
        total = load_s + steps * (network_step + other_step + step_s[name] / n)
        rows.append({"sampler": name, "total_s": total, "network_s": steps * network_step, "evaluations": steps,
                     "network_calls": timer.calls // n * steps, "extrapolated": True, "timed_steps": n,
                     "precision": precision})
    return {"peers": rows, "rss_after_import_mb": rss_before}


def worker(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, str(REPO))
    result = run_drdd(spec) if spec["sampler"] == "drdd" else run_peer(spec)
    result["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------------------- driver side
#: Volume shapes (X, Y, Z) by name.
VOLUMES = {"quick": [128, 128, 16], "head": [256, 256, 150], "pelvis": [512, 512, 200]}


def scenarios(volumes: list[str], presets: list[str], device: str, threads: int) -> list[dict[str, Any]]:
    """Scenario specs, per volume: DRDD 2 + 2 per preset in bf16 and fp32, one network call, DDIM-50, pipeline only."""
    out = []
    for volume in volumes:
        common = {"device": device, "threads": threads, "mode": "2d", "shape": VOLUMES[volume], "volume": volume}
        for preset in presets:
            for precision in ("bf16", "fp32"):
                out.append({**common, "name": f"drdd-{preset}-{precision}-{volume}", "sampler": "drdd",
                            "preset": preset, "precision": precision})
            out.append({**common, "name": f"onecall-{preset}-{volume}", "sampler": "drdd", "preset": preset,
                        "precision": "auto", "steps": [1, 0]})
            out.append({**common, "name": f"peer-{preset}-{volume}", "sampler": "peer", "preset": preset,
                        "precision": "auto", "timed_steps": 1})
        out.append({**common, "name": f"pipeline-oracle-{volume}", "sampler": "drdd", "preset": "oracle",
                    "precision": "fp32", "steps": [1, 0]})
    return out


def machine() -> dict[str, Any]:
    """CPU model, the flags that decide bf16 speed, CPUs available and the load average."""
    from drdd_med import runtime

    model, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
            if line.startswith("flags"):
                flags = sorted(f for f in line.partition(":")[2].split() if "bf16" in f or f.startswith("amx")
                               or f == "avx512f")
                break
    except OSError:
        pass
    return {"cpu": model, "cpu_flags": flags, "cpu_bf16_native": runtime.cpu_has_bf16(),
            "cpus_available": runtime.available_cpus(), "cpu_count": os.cpu_count()}


def run_scenario(spec: dict[str, Any], work: Path, timeout_s: float) -> list[dict[str, Any]]:
    """Run one scenario in a fresh interpreter (its own peak RSS); returns its table rows."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # The input is generated in its own process: Linux carries a parent's peak RSS into a forked child's ru_maxrss,
    # so a driver that had built a large volume would inflate every later scenario's peak.
    maker = subprocess.run([sys.executable, __file__, "--make-input", json.dumps([spec["shape"], str(work)])],
                           capture_output=True, text=True, env=env, timeout=timeout_s, check=True)
    spec = {**spec, "input": maker.stdout.strip().splitlines()[-1], "work": str(work)}
    load_before = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=timeout_s)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scenario {spec['name']} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    base = {"mode": spec["mode"], "preset": spec["preset"], "shape": spec["shape"],
            "peak_rss_mb": result["peak_rss_mb"], "rss_after_import_mb": result["rss_after_import_mb"],
            "load_before": load_before, "load_after": os.getloadavg()[0]}
    runs = result["peers"] if "peers" in result else [{**result, "sampler": "drdd"}]
    rows = []
    for run in runs:
        peer_name = f"{run['sampler']}{run['evaluations']}-{spec['preset']}-{spec['volume']}"
        name = spec["name"] if run["sampler"] == "drdd" else peer_name
        row = {"name": name, "scenario": spec["name"], **base, **{k: v for k, v in run.items() if k not in base}}
        row["overhead_ratio"] = row["total_s"] / max(row["network_s"], 1e-9)
        row["s_per_slice"] = row["total_s"] / spec["shape"][2]
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| scenario | preset | precision | volume | network evals | total s | network s | total/network | "
            "s/slice | peak RSS MB | load before/after |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        star = " (extrap.)" if r["extrapolated"] else ""
        volume = "x".join(map(str, r["shape"]))
        lines.append(f"| {r['name']} | {r['preset']} | {r.get('precision', '')} | {volume} | {r['evaluations']} "
                     f"| {r['total_s']:.1f}{star} | {r['network_s']:.1f} | {r['overhead_ratio']:.3f} | "
                     f"{r['s_per_slice']:.3f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['load_before']:.1f}/{r['load_after']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one 128x128x16 volume (smoke run)")
    parser.add_argument("--pelvis", action="store_true", help="also the 512x512x200 volume")
    parser.add_argument("--presets", nargs="+", default=["lean", "compact"],
                        help="network presets (default: lean compact)")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names to run (default: all)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default: {RESULTS})")
    parser.add_argument("--timeout", type=float, default=1800, help="per-scenario timeout, seconds")
    parser.add_argument("--append", action="store_true",
                        help="keep the other scenarios' rows of an existing --out file (replace rows run again)")
    parser.add_argument("--update-readme", action="store_true",
                        help="rewrite the README's speed table from --out (no benchmark run)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--make-input", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.update_readme:
        update_readme(json.loads(args.out.read_text()))
        return 0
    if args.make_input:
        shape, folder = json.loads(args.make_input)
        print(_write_input(shape, Path(folder)))
        return 0
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    volumes = ["quick"] if args.quick else ["head"] + (["pelvis"] if args.pelvis else [])
    specs = [spec for spec in scenarios(volumes, args.presets, args.device, args.threads)
             if not args.only or spec["name"] in args.only]
    report = {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "device": args.device, "threads": args.threads,
              **machine(), "load_average_1min_at_start": os.getloadavg()[0],
              "notes": "Untrained 2D networks (timing only). DRDD and one-call rows: the full SCTPredictor pipeline "
                       "(load, normalise, sample, invert, write int16 NIfTI) with its CPU defaults (cache-sized "
                       "slice batches, channels-last). DDIM-50: load + network + scheduler loop with the same "
                       "slice batches, precision and memory format, timed on the first step and extrapolated.",
              "results": [], "failed": []}
    if args.append and args.out.is_file():
        previous = json.loads(args.out.read_text())
        names = {spec["name"] for spec in specs}
        report["results"] = [r for r in previous.get("results", []) if r.get("scenario", r["name"]) not in names]
    with tempfile.TemporaryDirectory(prefix="drdd_bench_") as work:
        for spec in specs:
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


README = REPO / "README.md"
README_MARKERS = ("<!-- speed-table:start -->", "<!-- speed-table:end -->")


def readme_table(report: dict[str, Any]) -> str:
    """The README's speed table: one row per scenario, and the machine it was measured on."""
    lines = ["| scenario | volume | precision | network evals | total s | s/slice | total / network | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        star = " (extrapolated)" if r["extrapolated"] else ""
        lines.append(f"| {r['name']} | {'x'.join(map(str, r['shape']))} | {r.get('precision', '')} | "
                     f"{r['evaluations']} | {r['total_s']:.1f}{star} | {r['s_per_slice']:.3f} | "
                     f"{r['overhead_ratio']:.3f} | {r['peak_rss_mb']:.0f} |")
    loads = [r["load_before"] for r in report["results"]] + [r["load_after"] for r in report["results"]]
    flags = ", ".join(report.get("cpu_flags", [])) or "none"
    lines.append("")
    lines.append(f"Measured {report['created']} on {report['cpu']} ({report['cpus_available']} CPUs available, "
                 f"{report['threads']} threads; bf16-relevant CPU flags: {flags}); 1-minute load average "
                 f"{min(loads):.1f}–{max(loads):.1f} during the run. `benchmarks/results/inference.json` has every "
                 "number.")
    return "\n".join(lines)


def update_readme(report: dict[str, Any], readme: Path = README) -> None:
    """Replace the text between the README's speed-table markers by :func:`readme_table`."""
    text = readme.read_text()
    start, end = (text.index(m) for m in README_MARKERS)
    text = text[: start + len(README_MARKERS[0])] + "\n" + readme_table(report) + "\n" + text[end:]
    readme.write_text(text)


def _write_report(report: dict[str, Any], out: Path) -> None:
    from drdd_med.io.atomic import write_atomic

    write_atomic(out, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
