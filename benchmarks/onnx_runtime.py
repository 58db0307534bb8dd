"""Network-call speed on CPU: torch fp32, torch bf16 autocast + channels_last, and ONNX Runtime fp32.

One DRDD network call (residual and noise net separately) on a batch of 256x256 slices of the ``lean`` 2D preset
(``compact`` where ``lean`` does not exist), timed for each backend and batch size with the same inputs:

- ``torch-fp32``: :class:`~drdd_med.networks.DRDDNet` under ``torch.inference_mode``;
- ``torch-bf16-cl``: the same inside ``torch.autocast("cpu", dtype=torch.bfloat16)``, weights and inputs
  channels-last;
- ``onnxruntime-fp32``: the networks exported with :func:`drdd_med.export.export_onnx` (verified against torch)
  and run through :class:`drdd_med.export.OnnxDRDDNet` (CPU provider), i.e. including its tensor <-> numpy
  conversions.

Threads: ``torch.set_num_threads(--threads)`` and ONNX Runtime ``intra_op_num_threads=--threads``. Each row is the
median and the minimum over ``--repeats`` timed calls after one warm-up call, divided by the batch size (on a shared
machine the minimum is the better estimate of the uncontended speed); "max abs diff" is the largest difference from
torch fp32 on that call. The load average (``uptime``) is recorded before and after, since these CPUs are usually
shared. Weights are random (timing does not depend on them).

Usage::

    python benchmarks/onnx_runtime.py [--preset lean] [--batches 2 4] [--repeats 3] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return sorted(f for f in line.split() if "bf16" in f or f.startswith("amx"))


def _uptime() -> str:
    """``uptime`` output (load averages over 1, 5 and 15 minutes), or ``os.getloadavg()`` without the command."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _default_preset() -> str:
    from drdd_med.networks.factory import PRESETS

    return "lean" if "lean" in PRESETS else "compact"


def _time(call: Any, repeats: int) -> tuple[list[float], Any]:
    """(seconds of each of ``repeats`` calls after one warm-up call, the last output)."""
    out = call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - start)
    return times, out


def run(preset: str, batches: list[int], repeats: int, threads: int, size: int) -> dict[str, Any]:
    """Time every (network, backend, batch); returns the rows and the context (load average, versions)."""
    import onnxruntime
    import torch

    from drdd_med.export import OnnxDRDDNet, export_onnx
    from drdd_med.networks.factory import build_drdd_net

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_drdd_net(2, 1, 1, preset=preset).eval()
    with torch.no_grad():  # MONAI zero-initialises the output convolutions; give every layer non-zero weights
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    load_before = _uptime()
    with tempfile.TemporaryDirectory() as folder:
        measured: dict[str, float] = {}
        start = time.perf_counter()
        export_onnx(net, folder, 2, measured=measured, num_threads=threads)
        export_s = time.perf_counter() - start
        onnx_net = OnnxDRDDNet.from_dir(folder, intra_op_num_threads=threads)
        bf16_net = build_drdd_net(2, 1, 1, preset=preset).eval()
        bf16_net.load_state_dict(net.state_dict())
        bf16_net = bf16_net.to(memory_format=torch.channels_last)
        rows = []
        for stage in ("residual", "noise"):
            for batch in batches:
                g = torch.Generator().manual_seed(batch)
                x = torch.randn(batch, 1, size, size, generator=g)
                source = torch.randn(batch, 1, size, size, generator=g)
                t = torch.full((batch,), 500.0)
                x_cl, s_cl = (v.contiguous(memory_format=torch.channels_last) for v in (x, source))

                def torch_fp32() -> Any:
                    with torch.inference_mode():
                        return net(x, source, t, stage=stage)

                def torch_bf16() -> Any:
                    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                        return bf16_net(x_cl, s_cl, t, stage=stage).float()

                def ort_fp32() -> Any:
                    return onnx_net(x, source, t, stage=stage)

                reference = None
                for backend, call in (("torch-fp32", torch_fp32), ("torch-bf16-cl", torch_bf16),
                                      ("onnxruntime-fp32", ort_fp32)):
                    times, out = _time(call, repeats)
                    reference = out if reference is None else reference
                    seconds = statistics.median(times)
                    rows.append({"network": stage, "backend": backend, "batch": batch, "s_per_call": seconds,
                                 "s_per_slice": seconds / batch, "s_per_slice_min": min(times) / batch,
                                 "times_s": times, "max_abs_diff": float((out.float() - reference).abs().max())})
                    print(f"  {stage:8s} {backend:16s} batch {batch}: {seconds / batch:.3f} s/slice", flush=True,
                          file=sys.stderr)
    load_after = _uptime()
    return {"preset": preset, "size": size, "threads": threads, "repeats": repeats, "rows": rows,
            "export_s": export_s, "export_max_abs_diff": measured, "loadavg_before": load_before,
            "loadavg_after": load_after, "cpu": platform.processor() or platform.machine(),
            "cpu_bf16_flags": _cpu_flags(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "available_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}


def format_table(result: dict[str, Any]) -> str:
    """Markdown table: one row per (network, backend), one column per batch size."""
    batches = sorted({r["batch"] for r in result["rows"]})
    head = "| network | backend | " + " | ".join(f"batch {b}: s/slice median / min (max abs diff)"
                                               for b in batches) + " |"
    lines = [f"preset {result['preset']}, {result['size']}x{result['size']} slices, {result['threads']} threads, "
             f"{result['repeats']} timed calls each; torch {result['torch']}, onnxruntime {result['onnxruntime']}, "
             f"{result['available_cpus']} CPUs, bf16 flags {result['cpu_bf16_flags'] or 'none'}",
             f"uptime before: {result['loadavg_before']}", f"uptime after:  {result['loadavg_after']}",
             "", head, "|" + "---|" * (2 + len(batches))]
    keys = dict.fromkeys((r["network"], r["backend"]) for r in result["rows"])
    for network, backend in keys:
        cells = []
        for b in batches:
            row = next(r for r in result["rows"] if (r["network"], r["backend"], r["batch"]) == (network, backend, b))
            cells.append(f"{row['s_per_slice']:.3f} / {row['s_per_slice_min']:.3f} "
                         f"({row['max_abs_diff']:.1e})")
        lines.append(f"| {network} | {backend} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None, help="network preset (default: lean, else compact)")
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 4], help="slices per call (default: 2 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads (default: 2)")
    parser.add_argument("--size", type=int, default=256, help="slice size (default: 256)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.preset or _default_preset(), args.batches, args.repeats, args.threads, args.size)
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
