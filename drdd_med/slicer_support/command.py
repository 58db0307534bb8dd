"""Build the ``drdd-med translate`` command line and name the files it exchanges with a caller.

Contract with the translate CLI: ``translate INPUT --bundle DIR --out DIR [--device cpu|cuda|auto] [--steps R,N]
[--samples N] [--domain t1w|t2w|cbct]`` writes ``<out>/<input stem>_sct.nii.gz`` on the input's grid, prints
progress lines as defined in :mod:`drdd_med.slicer_support.progress`, and exits 0 on success.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from drdd_med.diffusion.scheduler import sampling_problem
from drdd_med.data.domains import DOMAINS
from drdd_med.workflows.predictor import SCT_SUFFIX, input_stem

__all__ = [
    "DEVICES",
    "SCT_SUFFIX",
    "CLI_MODULE",
    "WorkPaths",
    "build_translate_command",
    "translate_environment",
    "input_stem",
    "expected_output_path",
    "create_work_paths",
]

DEVICES = ("auto", "cpu", "cuda")
#: Module run with ``python -m`` when no console script is used.
CLI_MODULE = "drdd_med.cli.main"


def _steps_arg(steps: str | Sequence[int]) -> str:
    parts = steps.split(",") if isinstance(steps, str) else list(steps)
    try:
        residual_steps, noise_steps = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"steps must be 'R,N' or (R, N) with two integers, got {steps!r}.") from None
    problem = sampling_problem(residual_steps, noise_steps)
    if problem:
        raise ValueError(f"steps {residual_steps},{noise_steps}: {problem}.")
    return f"{residual_steps},{noise_steps}"


def build_translate_command(
    input_path: str | os.PathLike,
    bundle_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    device: str = "auto",
    steps: str | Sequence[int] | None = None,
    samples: int | None = None,
    python: str | os.PathLike | None = None,
    console_script: str | None = None,
    domain: str | None = None,
) -> list[str]:
    """Return the argv list that runs the translate CLI in a subprocess.

    Args:
        input_path: input image (NIfTI / NRRD file or DICOM folder).
        bundle_dir: model bundle folder.
        out_dir: output folder.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        steps: residual and noise steps, ``"R,N"`` or ``(R, N)``; None for the bundle default.
        samples: number of samples averaged (>= 1); None for the bundle default.
        python: interpreter for ``python -m drdd_med.cli.main`` (default: ``sys.executable``).
        console_script: run this executable (e.g. ``"drdd-med"``) instead of ``python -m``.
        domain: the input's source domain (``"t1w"``, ``"t2w"``, ``"cbct"``) for a model trained on several; the
            NIfTI file the module writes does not record it. None: the model's only domain.

    Raises:
        ValueError: on an unknown device or domain, or invalid steps / samples.

    Example:
        >>> build_translate_command("in.nii.gz", "b", "o", device="cpu", steps=(2, 2), python="py")[3:]
        ['translate', 'in.nii.gz', '--bundle', 'b', '--out', 'o', '--device', 'cpu', '--steps', '2,2']
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}.")
    if domain is not None and domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS} (or None for the model's only domain), got {domain!r}.")
    prefix = [console_script] if console_script else [str(python or sys.executable), "-m", CLI_MODULE]
    command = [*prefix, "translate", str(input_path), "--bundle", str(bundle_dir), "--out", str(out_dir),
               "--device", device]
    if steps is not None:
        command += ["--steps", _steps_arg(steps)]
    if samples is not None:
        if int(samples) < 1:
            raise ValueError(f"samples must be >= 1, got {samples}.")
        command += ["--samples", str(int(samples))]
    if domain is not None:
        command += ["--domain", domain]
    return command


def translate_environment(device: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the subprocess: unbuffered output (progress streams live) and no GPU for ``cpu``."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env


def expected_output_path(input_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Where the translate CLI writes the synthetic CT of ``input_path``: ``<out_dir>/<stem>_sct.nii.gz``."""
    return Path(out_dir) / f"{input_stem(input_path)}{SCT_SUFFIX}"


@dataclass(frozen=True)
class WorkPaths:
    """Files of one run: a private work folder, the input written there, the CLI output folder and file."""

    work_dir: Path
    input_path: Path
    out_dir: Path
    output_path: Path


def create_work_paths(root: str | os.PathLike, volume_name: str) -> WorkPaths:
    """Create a new private work folder under ``root`` and name the run's files in it.

    Args:
        root: an existing temporary folder (in Slicer: ``slicer.app.temporaryPath``).
        volume_name: display name of the input volume; sanitised to a safe file stem.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", volume_name).strip("._") or "input"
    work_dir = Path(tempfile.mkdtemp(prefix="drdd_synthct_", dir=root))
    input_path = work_dir / f"{stem}.nii.gz"
    out_dir = work_dir / "out"
    return WorkPaths(work_dir, input_path, out_dir, expected_output_path(input_path, out_dir))
