"""MONAI / Ignite adapters of the HU metrics: the in-training validation proxy, nothing to report.

They serve only the validation inside training (progress, TensorBoard and the key metric of the validation
evaluator): ``y_pred`` and ``y`` are CT images on the padded training grid, scaled to [-1, 1] (the training window
[HU_MIN, HU_MAX] = [-1024, 3071] HU), mapped back to HU with :func:`drdd_med.transforms.array.unit_to_window` and
scored with the same functions as the scorer (:func:`~drdd_med.metrics.functional.masked_mae`, ``masked_psnr``,
``masked_ssim``). Each batch item (a 2D slice, a patch or a volume) is scored on its own and the items are averaged,
so these values are **non-SynthRAD**: the numbers to report come from the one scorer,
:func:`drdd_med.workflows.evaluate.evaluate_cases` (whole 3D volumes in HU on the original grid).

Example:
    >>> from monai.engines import SupervisedEvaluator                                            # doctest: +SKIP
    >>> from monai.handlers import from_engine                                                   # doctest: +SKIP
    >>> evaluator = SupervisedEvaluator(..., key_val_metric={                                    # doctest: +SKIP
    ...     "val_mae_hu_nonsynthrad": HUMeanAbsoluteError(
    ...         output_transform=from_engine(["pred", "label"]), mask_key="mask")})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.metrics.metric import reinit__is_reduced
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from drdd_med.keys import HU_MAX, HU_MIN
from drdd_med.metrics.functional import masked_mae, masked_psnr, masked_ssim
from drdd_med.transforms.array import unit_to_window

__all__ = [
    "NON_SYNTHRAD",
    "HUMAEMetric",
    "HUPSNRMetric",
    "HUSSIMMetric",
    "HUMeanAbsoluteError",
    "HUPeakSignalToNoiseRatio",
    "HUStructuralSimilarity",
]

#: Label carried by every metric here: per-item values are not comparable with the SynthRAD leaderboards.
NON_SYNTHRAD = "non-SynthRAD"


class _HUItemMetric(CumulativeIterationMetric):
    """Scores each batch item in HU with a functional metric and buffers one value per item.

    Args:
        hu_min: HU of -1 in ``y_pred`` / ``y``.
        hu_max: HU of +1 in ``y_pred`` / ``y``.
        reduction: MONAI metric reduction over the buffered (B, 1) values; NaN items (empty mask) are skipped.
        get_not_nans: also return the number of non-NaN items from :meth:`aggregate`.
    """

    label = NON_SYNTHRAD

    def __init__(self, hu_min: float = HU_MIN, hu_max: float = HU_MAX,
                 reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.hu_min, self.hu_max = float(hu_min), float(hu_max)
        self.reduction, self.get_not_nans = reduction, get_not_nans

    def _score(self, ct: np.ndarray, sct: np.ndarray, mask: np.ndarray | None) -> float:
        raise NotImplementedError

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None,  # type: ignore[override]
                        mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args: y_pred, y: (B, 1, H, W[, D]) in [-1, 1]; mask: same shape (or None), binarised as > 0.

        Returns: (B, 1) float32 values.
        """
        if y is None or y_pred.shape != y.shape or y_pred.ndim not in (4, 5) or y_pred.shape[1] != 1:
            raise ValueError(f"{type(self).__name__}: y_pred and y must both be (B, 1, H, W[, D]) in [-1, 1], got "
                             f"{tuple(y_pred.shape)} and {None if y is None else tuple(y.shape)}.")
        if mask is not None and tuple(mask.shape) != tuple(y.shape):
            raise ValueError(f"{type(self).__name__}: mask shape {tuple(mask.shape)} must equal y shape "
                             f"{tuple(y.shape)}.")
        sct, ct = (unit_to_window(t.detach().cpu().double().numpy(), self.hu_min, self.hu_max, clip=False)
                   for t in (y_pred, y))
        masks = None if mask is None else mask.detach().cpu().numpy() > 0
        values = [self._score(ct[b, 0], sct[b, 0], None if masks is None else masks[b, 0]) for b in range(len(ct))]
        return torch.tensor(values, dtype=torch.float32, device=y_pred.device).reshape(-1, 1)

    def _compute_list(self, y_pred: Any, y: Any = None, mask: Any = None) -> torch.Tensor:  # type: ignore[override]
        """Channel-first items (as after ``decollate_batch``); ``mask`` may be a list of the same length."""
        masks = mask if isinstance(mask, (list, tuple)) else [mask] * len(y_pred)
        return torch.cat([
            self._compute_tensor(p.unsqueeze(0), t.unsqueeze(0), None if m is None else torch.as_tensor(m)[None])
            for p, t, m in zip(y_pred, y, masks)
        ])

    def aggregate(self, reduction: MetricReduction | str | None = None) -> Any:
        """Reduce the buffered per-item values (default: mean over non-NaN items)."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"{type(self).__name__}: nothing buffered yet; call the metric on a batch first.")
        value, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (value, not_nans) if self.get_not_nans else value


class HUMAEMetric(_HUItemMetric):
    """Per-item masked MAE in HU (no clipping); non-SynthRAD."""

    def _score(self, ct, sct, mask):
        return masked_mae(ct, sct, mask)


class HUPSNRMetric(_HUItemMetric):
    """Per-item masked PSNR in dB with both images clipped to [hu_min, hu_max]; non-SynthRAD."""

    def _score(self, ct, sct, mask):
        return masked_psnr(ct, sct, mask, (self.hu_min, self.hu_max))


class HUSSIMMetric(_HUItemMetric):
    """Per-item masked SSIM (SynthRAD2023 recipe on the [hu_min, hu_max] range, 2D or 3D); non-SynthRAD."""

    def _score(self, ct, sct, mask):
        return masked_ssim(ct, sct, mask, (self.hu_min, self.hu_max))


class _HUMetricHandler(IgniteMetricHandler):
    """Ignite handler for a :class:`_HUItemMetric`, with an optional mask.

    The mask comes either as a third element of ``output_transform``'s result, or from ``engine.state.batch[mask_key]``
    (collated dict or decollated list of dicts), since evaluators do not copy batch keys into their output.
    """

    metric_class: type[_HUItemMetric]
    label = NON_SYNTHRAD

    def __init__(self, output_transform: Callable = lambda x: x, mask_key: str | None = None,
                 hu_min: float = HU_MIN, hu_max: float = HU_MAX, save_details: bool = True) -> None:
        super().__init__(metric_fn=self.metric_class(hu_min=hu_min, hu_max=hu_max),
                         output_transform=output_transform, save_details=save_details)
        self.mask_key = mask_key

    def iteration_completed(self, engine: Any) -> None:
        output = self._output_transform(engine.state.output)
        if self.mask_key is not None:
            batch = engine.state.batch
            mask = [item[self.mask_key] for item in batch] if isinstance(batch, (list, tuple)) else \
                batch[self.mask_key]
            output = (*tuple(output)[:2], mask)
        self.update(output)

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        if len(output) not in (2, 3):
            raise ValueError(f"{type(self).__name__}: output must be (y_pred, y) or (y_pred, y, mask), "
                             f"got {len(output)} items.")
        self.metric_fn(output[0], output[1], mask=output[2] if len(output) == 3 else None)


class HUMeanAbsoluteError(_HUMetricHandler):
    """Ignite handler: per-item masked MAE in HU of [-1, 1] images (non-SynthRAD)."""

    metric_class = HUMAEMetric


class HUPeakSignalToNoiseRatio(_HUMetricHandler):
    """Ignite handler: per-item masked PSNR in dB of [-1, 1] images (non-SynthRAD)."""

    metric_class = HUPSNRMetric


class HUStructuralSimilarity(_HUMetricHandler):
    """Ignite handler: per-item masked SSIM of [-1, 1] images (non-SynthRAD)."""

    metric_class = HUSSIMMetric
