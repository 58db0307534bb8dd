"""The source channels that share the target's grid, and the residual defined from them."""

from __future__ import annotations

import torch

__all__ = ["source_anchor", "residual_target"]


def source_anchor(source: torch.Tensor, target_channels: int) -> torch.Tensor:
    """Return the source channels aligned with the target (the "anchor" of the residual).

    With as many source as target channels this is the identity. A 2.5D stack of ``k`` adjacent slices of a
    ``Ct``-channel image (``k * Ct`` channels, ``k`` odd, slice-major) returns the middle slice group, which is the
    slice on the target's grid.

    Args:
        source: (B, Cs, *spatial) source image in [-1, 1].
        target_channels: Ct, the number of target channels.

    Returns:
        (B, Ct, *spatial) view of ``source``.

    Raises:
        ValueError: when ``Cs`` is not ``k * Ct`` with ``k`` odd.
    """
    cs, ct = int(source.shape[1]), int(target_channels)
    if ct < 1:
        raise ValueError(f"target_channels must be >= 1, got {target_channels}.")
    if cs == ct:
        return source
    k, rem = divmod(cs, ct)
    if rem or k % 2 == 0:
        raise ValueError(
            f"source has {cs} channels and the target {ct}: expected k * {ct} source channels with k odd "
            "(a stack of k slices centred on the target slice). Use an odd number of 2.5D context slices."
        )
    start = (k // 2) * ct
    return source[:, start : start + ct]


def residual_target(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The residual ``anchor(source) - target`` that the residual network predicts (METHOD.md §1).

    Args:
        source: (B, Cs, *spatial) source in [-1, 1].
        target: (B, Ct, *spatial) target in [-1, 1].

    Returns:
        (B, Ct, *spatial) residual in [-2, 2].
    """
    return source_anchor(source, target.shape[1]) - target
