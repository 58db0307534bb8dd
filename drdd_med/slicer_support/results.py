"""The result-loading contract of the translate CLI: find the output and check it matches the input grid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from drdd_med.slicer_support.command import expected_output_path

__all__ = ["find_result", "check_result_geometry", "describe_exit"]


def find_result(out_dir: str | os.PathLike, input_path: str | os.PathLike) -> Path:
    """Return ``<out_dir>/<input stem>_sct.nii.gz``.

    Raises:
        FileNotFoundError: naming the expected file and what ``out_dir`` holds instead.
    """
    expected = expected_output_path(input_path, out_dir)
    if expected.is_file():
        return expected
    found = sorted(p.name for p in Path(out_dir).iterdir()) if Path(out_dir).is_dir() else []
    raise FileNotFoundError(f"translate produced no {expected.name} in {out_dir} (found: {found or 'nothing'}); "
                            "check the process output for errors.")


def check_result_geometry(input_path: str | os.PathLike, output_path: str | os.PathLike,
                          atol_mm: float = 1e-3) -> None:
    """Check that the output image lies on the input's voxel grid (same spatial shape and affine).

    Args:
        input_path: NIfTI file given to the CLI.
        output_path: NIfTI file it produced.
        atol_mm: tolerance on the affine entries, in mm.

    Raises:
        ValueError: describing the shape or affine mismatch.
    """
    import nibabel as nib

    source, result = nib.load(str(input_path)), nib.load(str(output_path))
    if source.shape[:3] != result.shape[:3]:
        raise ValueError(f"{output_path}: shape {result.shape[:3]} differs from the input {source.shape[:3]}; the "
                         "synthetic CT must be written on the input grid.")
    if not np.allclose(source.affine, result.affine, atol=atol_mm):
        raise ValueError(f"{output_path}: affine differs from the input by up to "
                         f"{np.abs(source.affine - result.affine).max():.3g} mm; the synthetic CT must be written on "
                         "the input grid.")


def describe_exit(returncode: int, output_tail: list[str] | tuple[str, ...] = ()) -> str | None:
    """``None`` for success, otherwise a one-paragraph explanation of a non-zero exit for the user."""
    if returncode == 0:
        return None
    if returncode < 0:
        return f"translate was stopped by signal {-returncode} (cancelled or killed)."
    tail = "\n".join(output_tail[-10:])
    return f"translate failed with exit code {returncode}." + (f" Last output:\n{tail}" if tail else "")
