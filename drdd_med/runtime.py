"""Where and how the networks run: device, numeric precision and compute threads (one home for all three).

- **Precision.** ``"auto"`` picks bfloat16 autocast where the hardware computes bf16 natively: CUDA devices that
  support it, and CPUs with AVX512-BF16 or AMX-BF16 (read from the CPU flags at run time: bf16 on a CPU without
  them is emulated and *slower* than fp32). ``"fp32"`` and ``"bf16"`` force either. Autocast keeps weights,
  normalisation and the sampler's arithmetic in float32; only the network's matrix work runs in bf16, and every
  network output is returned as float32.
- **Threads.** ``torch`` defaults to one thread per *online* CPU, which oversubscribes a process limited by
  ``taskset``, a container cpuset or a batch scheduler; :func:`configure_threads` uses the CPUs this process may run
  on (``os.sched_getaffinity``), less those other processes already keep busy (the 1-minute load average), unless
  told a number. Measured on 2 cores with another busy process: 2 compute threads trained at < 0.2 it/s (the
  threads wait for each other at every operation while one of them is descheduled), 1 thread at 3.4 it/s.

MONAI's trainers and evaluators only autocast on CUDA (``torch.autocast("cuda")`` in ``SupervisedTrainer``), so the
stage inferers and the volume inferer wrap their network calls in :func:`autocast` themselves.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "resolve_device", "cpu_has_bf16", "resolve_precision", "autocast", "configure_threads",
           "available_cpus", "idle_cpus", "describe", "setup"]

logger = logging.getLogger(__name__)

#: Values of every ``precision`` option (CLI ``--precision``, bundle ``precision``, predictor ``precision``).
PRECISIONS = ("auto", "fp32", "bf16")
#: CPU flags (``/proc/cpuinfo``) that mean native bf16 arithmetic.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    Raises:
        ValueError: CUDA was requested but is not available.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine; use --device cpu or auto.")
    return dev


@functools.lru_cache(maxsize=1)
def _cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:  # not Linux: no flags, so "auto" stays fp32
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    return any(flag in _cpu_flags() for flag in _BF16_FLAGS)


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """``"bf16"`` or ``"fp32"`` for ``device``.

    Args:
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
        device: where the networks run.

    Raises:
        ValueError: an unknown precision.
    """
    precision = str(precision).lower()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}.")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        logger.warning("bf16 forced on a CPU without AVX512-BF16/AMX: it is emulated and usually slower than fp32")
    return precision


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 on ``device`` for ``precision == "bf16"``, else a no-op context."""
    device = torch.device(device)
    if precision != "bf16" or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the online CPU count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1


def idle_cpus() -> int:
    """:func:`available_cpus` less the CPUs other processes keep busy (whole part of the 1-minute load average),
    at least 1."""
    try:
        busy = int(os.getloadavg()[0])
    except (AttributeError, OSError):  # Windows
        busy = 0
    return max(1, available_cpus() - busy)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count and return it.

    Args:
        threads: a positive count; None or 0 -> :func:`idle_cpus` (pass a number on machines whose load average
            does not reflect what this process will share, e.g. a job that starts many processes at once).

    Raises:
        ValueError: a negative count.
    """
    if threads is not None and int(threads) < 0:
        raise ValueError(f"threads must be >= 0 (0 = automatic), got {threads}.")
    count = int(threads) if threads else idle_cpus()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def describe(device: str | torch.device, precision: str) -> str:
    """One log line: device, precision, threads and whether the CPU has native bf16."""
    device = torch.device(device)
    line = f"device {device}, precision {precision}"
    if device.type == "cpu":
        line += f", {torch.get_num_threads()} thread(s) of {available_cpus()} available CPU(s)"
        line += ", CPU bf16 " + ("native" if cpu_has_bf16() else "not native")
    return line


def setup(device: str | torch.device, precision: str = "auto", threads: int | None = None) -> str:
    """Configure threads (on CPU), resolve ``precision`` for ``device``, log one line; return ``"bf16"``/``"fp32"``."""
    device = torch.device(device)
    if device.type == "cpu":
        configure_threads(threads)
    resolved = resolve_precision(precision, device)
    logger.info("compute: %s (requested precision %s)", describe(device, resolved), precision)
    return resolved
