"""Array transforms: intensity maps to and from [-1, 1], and the 2.5D slice-stack reshapes.

CT uses a fixed HU window (default [HU_MIN, HU_MAX] = [-1024, 3071]) mapped linearly to [-1, 1] with clipping; MR
uses per-image percentiles (default 0.5 and 99.5) mapped the same way. :func:`window_to_unit` and its inverse
:func:`unit_to_window` are the one home of these maps (transforms, baselines, metric adapters). They do what a pair
of MONAI ``ScaleIntensityRange`` transforms does (the results agree to 1 ulp) and are kept because they keep the
input's type: on a NumPy volume ``ScaleIntensityRange`` returns a torch ``MetaTensor`` and took 0.20 s against
0.036 s for 256 x 256 x 150 float32 voxels on one thread (MONAI 1.6.1; on tensors both take the same time), and the
scorer and the baselines work in NumPy float64. No histogram equalisation is ever applied: it would destroy the
quantitative meaning of HU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import Transform

from drdd_med.keys import HU_MAX, HU_MIN, UNIT_MAX, UNIT_MIN

__all__ = [
    "UNIT_WINDOW_KEY", "MiddleSlice", "PercentileToUnit", "SlicesToChannels", "UnitToWindow", "WindowToUnit",
    "percentile_window", "unit_to_window", "window_to_unit",
]

#: MetaTensor meta key where :class:`PercentileToUnit` records the (a_min, a_max) it used, for the inverse.
UNIT_WINDOW_KEY = "unit_window"


def window_to_unit(img: NdarrayOrTensor, a_min: float = HU_MIN, a_max: float = HU_MAX, clip: bool = True) -> NdarrayOrTensor:
    """Map [a_min, a_max] linearly to [-1, 1].

    Args:
        img: any shape, numpy or torch, in the window's units (HU for CT).
        a_min: value mapped to -1.
        a_max: value mapped to +1.
        clip: clip the result to [-1, 1].

    Returns:
        Same type and shape, float, in [-1, 1] when ``clip``.
    """
    if not a_max > a_min:
        raise ValueError(f"window_to_unit: need a_max > a_min, got a_min={a_min}, a_max={a_max}.")
    out = (img - a_min) * ((UNIT_MAX - UNIT_MIN) / (a_max - a_min)) + UNIT_MIN
    if clip:
        out = out.clip(UNIT_MIN, UNIT_MAX)
    return out


def unit_to_window(img: NdarrayOrTensor, a_min: float = HU_MIN, a_max: float = HU_MAX, clip: bool = True) -> NdarrayOrTensor:
    """Exact inverse of :func:`window_to_unit` on [-1, 1]: map [-1, 1] to [a_min, a_max].

    Args:
        img: any shape, numpy or torch, values in [-1, 1] (clipped first when ``clip``).
        a_min: value that -1 maps to (HU_MIN for CT).
        a_max: value that +1 maps to.
        clip: clip the input to [-1, 1] first (network outputs may overshoot).

    Returns:
        Same type and shape, in the window's units.
    """
    if clip:
        img = img.clip(UNIT_MIN, UNIT_MAX)
    return (img - UNIT_MIN) * ((a_max - a_min) / (UNIT_MAX - UNIT_MIN)) + a_min


def percentile_window(img: NdarrayOrTensor, lower: float = 0.5, upper: float = 99.5) -> tuple[float, float]:
    """(a_min, a_max) = the ``lower`` and ``upper`` percentiles of the image (all voxels).

    Returns:
        Two floats; a_max > a_min is guaranteed (a constant image gets a_max = a_min + 1).
    """
    values = img.detach().float().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img, dtype=np.float32)
    a_min, a_max = (float(v) for v in np.percentile(values, [lower, upper]))
    return a_min, (a_max if a_max > a_min else a_min + 1.0)


class WindowToUnit(Transform):
    """Fixed window -> [-1, 1] (CT in HU, CBCT); ``inverse_intensity`` maps back.

    Args:
        a_min: value mapped to -1 (HU).
        a_max: value mapped to +1 (HU).
        clip: clip to [-1, 1].
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, a_min: float = HU_MIN, a_max: float = HU_MAX, clip: bool = True) -> None:
        window_to_unit(np.zeros(1), a_min, a_max)  # validates the window
        self.a_min, self.a_max, self.clip = float(a_min), float(a_max), clip

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Map (C, *spatial) values in [a_min, a_max] to [-1, 1]."""
        return window_to_unit(img.float() if isinstance(img, torch.Tensor) else np.asarray(img, np.float32), self.a_min, self.a_max, self.clip)

    def inverse_intensity(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Map [-1, 1] back to [a_min, a_max]."""
        return unit_to_window(img, self.a_min, self.a_max)


class PercentileToUnit(Transform):
    """Per-image percentile window -> [-1, 1] (MR); records the window in ``meta[UNIT_WINDOW_KEY]`` for the inverse.

    Args:
        lower: lower percentile (mapped to -1).
        upper: upper percentile (mapped to +1).
        clip: clip to [-1, 1].
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, lower: float = 0.5, upper: float = 99.5, clip: bool = True) -> None:
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"PercentileToUnit: need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}.")
        self.lower, self.upper, self.clip = float(lower), float(upper), clip

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Map (C, *spatial) arbitrary-unit values to [-1, 1] using this image's percentiles."""
        a_min, a_max = percentile_window(img, self.lower, self.upper)
        out = window_to_unit(img.float() if isinstance(img, torch.Tensor) else np.asarray(img, np.float32), a_min, a_max, self.clip)
        if isinstance(out, MetaTensor):
            out.meta[UNIT_WINDOW_KEY] = [a_min, a_max]
        return out


class UnitToWindow(Transform):
    """[-1, 1] -> window units: explicit (a_min, a_max), or the window recorded by :class:`PercentileToUnit`.

    Args:
        a_min: value for -1; None reads ``img.meta[UNIT_WINDOW_KEY]``.
        a_max: value for +1; None reads the meta as well.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, a_min: float | None = HU_MIN, a_max: float | None = HU_MAX) -> None:
        self.a_min, self.a_max = a_min, a_max

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Map (C, *spatial) values in [-1, 1] to the window's units."""
        a_min, a_max = self.a_min, self.a_max
        if a_min is None or a_max is None:
            window = img.meta.get(UNIT_WINDOW_KEY) if isinstance(img, MetaTensor) else None
            if window is None:
                raise ValueError(f"UnitToWindow: no a_min/a_max given and the image has no meta[{UNIT_WINDOW_KEY!r}].")
            a_min, a_max = (float(v) for v in window)
        return unit_to_window(img, a_min, a_max)


class SlicesToChannels(Transform):
    """(1, H, W, k) slab -> (k, H, W): k neighbouring axial slices become channels (2.5D input)."""

    backend = [torch.Tensor]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Move the last spatial axis to channels; the input must have one channel."""
        if img.ndim != 4 or img.shape[0] != 1:
            raise ValueError(f"SlicesToChannels expects (1, H, W, k), got {tuple(img.shape)}.")
        return _plain(img)[0].permute(2, 0, 1).contiguous()


class MiddleSlice(Transform):
    """(C, H, W, k) slab -> (C, H, W): the middle slice (index k // 2), the target of a 2.5D sample."""

    backend = [torch.Tensor]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """Select slice k // 2 of the last axis."""
        if img.ndim != 4:
            raise ValueError(f"MiddleSlice expects (C, H, W, k), got {tuple(img.shape)}.")
        return _plain(img)[..., img.shape[-1] // 2].contiguous()


def _plain(img: Any) -> torch.Tensor:
    return img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
