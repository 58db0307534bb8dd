"""Input checks shared by the training prepare-batch objects and the inferers (fail early, say the fix)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["check_finite", "check_same_spatial", "check_divisible", "check_ndim"]


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ValueError when ``x`` holds NaN or infinite values."""
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} contains {n_bad} NaN/inf values; fix the input (e.g. replace NaN with the background value "
            "before intensity scaling, or check the file) and retry."
        )


def check_ndim(name: str, x: torch.Tensor, spatial_dims: int | None) -> None:
    """Raise ValueError unless ``x`` is (B, C, *spatial) with ``spatial_dims`` spatial axes."""
    if spatial_dims is not None and x.ndim != spatial_dims + 2:
        raise ValueError(
            f"{name} must have shape (B, C, {', '.join('HWD'[:spatial_dims])}) for a {spatial_dims}D network, "
            f"got {tuple(x.shape)}; add the batch/channel axes (e.g. x[None, None]) or use the matching network."
        )


def check_same_spatial(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise ValueError unless ``a`` and ``b`` share batch size and spatial shape (channels may differ)."""
    if a.ndim != b.ndim or a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ValueError(
            f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} must have the same batch size and spatial "
            "shape (B, *, *spatial); resample both images onto the same grid first (e.g. monai ResampleToMatchd)."
        )


def check_divisible(name: str, x: torch.Tensor, divisor: int | Sequence[int]) -> None:
    """Raise ValueError unless every spatial size of ``x`` is divisible by ``divisor`` (the U-Net's factor)."""
    spatial = tuple(int(v) for v in x.shape[2:])
    divs = [int(divisor)] * len(spatial) if isinstance(divisor, int) else [int(v) for v in divisor]
    bad = [f"{size} (axis {i})" for i, (size, d) in enumerate(zip(spatial, divs)) if size % d]
    if bad:
        raise ValueError(
            f"{name} spatial size {spatial} is not divisible by the network's factor {divisor}: {', '.join(bad)}. "
            f"Pad the input, e.g. with monai.transforms.DivisiblePad(k={divisor}) (DivisiblePadd for dictionaries), "
            "and crop the output back."
        )
