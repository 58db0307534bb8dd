"""Image metrics: SynthRAD definitions on HU volumes and MONAI/Ignite adapters."""

from __future__ import annotations

from drdd_med.metrics.functional import (
    masked_mae,
    masked_ms_ssim,
    masked_psnr,
    masked_ssim,
    synthrad2023_metrics,
    synthrad2025_metrics,
    tissue_mae,
)

__all__ = [
    "masked_mae",
    "masked_psnr",
    "masked_ssim",
    "masked_ms_ssim",
    "synthrad2023_metrics",
    "synthrad2025_metrics",
    "tissue_mae",
]
