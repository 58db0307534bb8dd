"""MONAI ``Compose`` pipelines for training (2D / 2.5D / 3D), the noise stage, validation and inference.

Shapes after each pipeline (C = channels, spatial in RAS index order):

============  ===========================  ===========================  ==============
pipeline       source                       target                       mask
============  ===========================  ===========================  ==============
train 2d      (1, H, W)                    (1, H, W)                    (1, H, W)
train 2.5d    (k, H, W) neighbouring       (1, H, W) = middle slice      (1, H, W)
train 3d      (1, X, Y, Z) patch           (1, X, Y, Z)                 (1, X, Y, Z)
val / infer   (1, X, Y, Z) whole volume, padded to the network's divisibility
============  ===========================  ===========================  ==============

Random crops return ``num_samples`` samples per volume (a list; MONAI datasets flatten it). Intensities are in
[-1, 1]; padding uses -1 (air for CT, background for MR) on images and 0 on masks. Every random transform crops all
keys of a sample identically, so pairs stay voxel-aligned. Inference ends with :func:`inference_postprocessing`,
which maps predictions back to HU and to the source's native grid and orientation with ``Invertd``.

Items of a dataset that mixes source domains (T1w, T2w, CBCT) name their ``keys.DOMAIN``; with ``domain_norms``
the training and validation pipelines normalise each source with its domain's setting, and with ``domain_labels``
they add the domain's class label (``keys.DOMAIN_INDEX``) for a domain-embedding model. Inference pipelines are
built per domain (:meth:`~drdd_med.workflows.model_config.ModelConfig.preprocessing`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    BorderPadd,
    CastToTyped,
    Compose,
    DivisiblePadd,
    EnsureTyped,
    Invertd,
    Lambdad,
    LoadImaged,
    Orientationd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandSpatialCropSamplesd,
    SaveImaged,
    ScaleIntensityRanged,
    ShiftIntensityd,
    Spacingd,
    SpatialPadd,
    SqueezeDimd,
)

from drdd_med import keys
from drdd_med.io.nifti import VolumeReader
from drdd_med.transforms.dictionary import (
    DomainIndexd,
    MiddleSliced,
    NormalizeByDomaind,
    NormalizeToUnitd,
    SlicesToChannelsd,
)

__all__ = [
    "inference_postprocessing", "inference_transforms", "noise_stage_transforms", "train_transforms", "val_transforms",
]

_SOURCE_NORM = {"type": "percentile", "lower": 0.5, "upper": 99.5}
_TARGET_NORM = {"type": "range", "a_min": keys.HU_MIN, "a_max": keys.HU_MAX}


def _check_mode(mode: str) -> None:
    if mode not in keys.MODES:
        raise ValueError(f"mode={mode!r}: expected one of {keys.MODES}.")


def _roi(mode: str, roi_size: Sequence[int], divisor: int) -> tuple[int, ...]:
    roi = tuple(int(r) for r in roi_size)
    expected = 3 if mode == "3d" else 2
    if len(roi) != expected:
        raise ValueError(f"roi_size={list(roi_size)}: mode {mode!r} needs {expected} sizes ({'X, Y, Z' if expected == 3 else 'H, W'}).")
    bad = [r for r in roi if r <= 0 or r % divisor]
    if bad:
        raise ValueError(f"roi_size={list(roi)}: every size must be a positive multiple of the network divisor {divisor}.")
    return roi


def _norm_value(norm: Any, key: str, default: Any) -> Any:
    return norm.get(key, default) if isinstance(norm, Mapping) else getattr(norm, key, default)


def _load(image_keys: list[str], mask_key: str | None, pixdim: Sequence[float] | None, dicom_rules: Any) -> list[Any]:
    all_keys = image_keys + ([mask_key] if mask_key else [])
    out = [
        LoadImaged(all_keys, reader=VolumeReader(dicom_rules), image_only=True, ensure_channel_first=True),
        EnsureTyped(all_keys, dtype=torch.float32, track_meta=True),
        Orientationd(all_keys, axcodes="RAS", labels=None),
    ]
    if pixdim is not None:
        modes = ["bilinear"] * len(image_keys) + (["nearest"] if mask_key else [])
        out.append(Spacingd(all_keys, pixdim=pixdim, mode=modes))
    return out


def _normalize(source_key: str, target_key: str, source_norm: Any, target_norm: Any,
               domain_norms: Mapping[str, Any] | None, domain_labels: Sequence[str] | None) -> list[Any]:
    """Source and target to [-1, 1]: the source by its item's domain when ``domain_norms`` is given, plus the
    domain's class label when ``domain_labels`` is."""
    source = (NormalizeByDomaind(source_key, domain_norms, source_norm) if domain_norms
              else NormalizeToUnitd(source_key, source_norm))
    chain = [source, NormalizeToUnitd(target_key, target_norm)]
    return chain + ([DomainIndexd(domain_labels)] if domain_labels else [])


def _pad(cls: type, image_keys: list[str], mask_key: str | None, **kwargs: Any) -> list[Any]:
    out = [cls(image_keys, mode="constant", value=keys.UNIT_MIN, **kwargs)]
    if mask_key:
        out.append(cls([mask_key], mode="constant", value=0.0, **kwargs))
    return out


def _random_samples(mode: str, all_keys: list[str], mask_key: str | None, roi: tuple[int, ...], num_samples: int,
                    k: int, pos_neg: tuple[float, float]) -> list[Any]:
    if mode == "3d" and mask_key:
        return [RandCropByPosNegLabeld(all_keys, label_key=mask_key, spatial_size=roi, pos=pos_neg[0], neg=pos_neg[1],
                                       num_samples=num_samples, allow_smaller=False)]
    if mode == "3d":
        return [RandSpatialCropSamplesd(all_keys, roi_size=roi, num_samples=num_samples, random_size=False)]
    return [RandSpatialCropSamplesd(all_keys, roi_size=(*roi, k), num_samples=num_samples, random_size=False)]


def train_transforms(mode: str, source_norm: Any = _SOURCE_NORM, target_norm: Any = _TARGET_NORM,
                     roi_size: Sequence[int] = (96, 96), num_samples: int = 4, num_slices_2p5d: int = 3,
                     divisor: int = 1, source_key: str = keys.SOURCE, target_key: str = keys.TARGET,
                     mask_key: str | None = keys.MASK, pixdim: Sequence[float] | None = None, flip_prob: float = 0.0,
                     pos_neg: tuple[float, float] = (3.0, 1.0), dicom_rules: Any = None,
                     domain_norms: Mapping[str, Any] | None = None,
                     domain_labels: Sequence[str] | None = None) -> Compose:
    """Paired training pipeline: load, RAS, [-1, 1], pad, random aligned samples.

    Args:
        mode: ``"2d"`` (random axial slices), ``"2.5d"`` (``num_slices_2p5d`` neighbouring source slices as
            channels, target = middle slice) or ``"3d"`` (patches, biased to the mask by ``pos_neg`` when a mask
            key is given).
        source_norm: source normalisation (``NormalizeSpec`` or dict), default percentile 0.5..99.5.
        target_norm: target normalisation, default HU window [HU_MIN, HU_MAX].
        roi_size: (H, W) for 2D / 2.5D, (X, Y, Z) for 3D; multiples of ``divisor``.
        num_samples: samples drawn per volume.
        num_slices_2p5d: k, odd.
        divisor: the network's spatial divisibility.
        source_key: item key of the source.
        target_key: item key of the target.
        mask_key: item key of the body mask, or None when items have none.
        pixdim: resample to this spacing (mm) first; None keeps the native grid.
        flip_prob: probability of a left-right flip (applied to all keys together).
        pos_neg: (pos, neg) ratio of patch centres inside / outside the mask (3D with mask).
        dicom_rules: series selection rules for DICOM folders.
        domain_norms: domain -> source normalisation, applied by each item's ``keys.DOMAIN`` (items without one
            use ``source_norm``); None normalises every source with ``source_norm``.
        domain_labels: the model's domains: adds ``keys.DOMAIN_INDEX`` (the item's class label) for a
            domain-embedding model; None adds nothing.

    Returns:
        A ``Compose`` mapping an item of paths to ``num_samples`` sample dicts.
    """
    _check_mode(mode)
    roi = _roi(mode, roi_size, divisor)
    k = int(num_slices_2p5d) if mode == "2.5d" else 1
    if k < 1 or k % 2 == 0:
        raise ValueError(f"num_slices_2p5d={num_slices_2p5d}: must be odd and >= 1, so that a middle slice exists.")
    images = [source_key, target_key]
    all_keys = images + ([mask_key] if mask_key else [])
    chain = _load(images, mask_key, pixdim, dicom_rules)
    chain += _normalize(source_key, target_key, source_norm, target_norm, domain_norms, domain_labels)
    chain += _pad(SpatialPadd, images, mask_key, spatial_size=roi if mode == "3d" else (*roi, -1))
    if k > 1:  # edge slices get neighbours too; only the middle slice is a target, and it is never a padded one
        chain += [BorderPadd(all_keys, spatial_border=[0, 0, 0, 0, k // 2, k // 2], mode="edge")]
    if flip_prob > 0:
        chain.append(RandFlipd(all_keys, prob=flip_prob, spatial_axis=0))
    chain += _random_samples(mode, all_keys, mask_key, roi, num_samples, k, pos_neg)
    if mode == "2d":
        chain.append(SqueezeDimd(all_keys, dim=3))
    elif mode == "2.5d":
        chain += [SlicesToChannelsd(source_key), MiddleSliced([target_key] + ([mask_key] if mask_key else []))]
    return Compose(chain)


def noise_stage_transforms(mode: str, target_norm: Any = _TARGET_NORM, roi_size: Sequence[int] = (96, 96),
                           num_samples: int = 4, divisor: int = 1, target_key: str = keys.TARGET,
                           mask_key: str | None = None, pixdim: Sequence[float] | None = None, flip_prob: float = 0.0,
                           pos_neg: tuple[float, float] = (3.0, 1.0)) -> Compose:
    """Target-only training pipeline for the noise stage (items from ``DatasetSpec.target_items()``).

    2D and 2.5D both yield (1, H, W) target slices (the noise stage denoises the target only); 3D yields patches,
    biased to the mask when ``mask_key`` is given. Arguments as in :func:`train_transforms`.
    """
    _check_mode(mode)
    roi = _roi(mode, roi_size, divisor)
    all_keys = [target_key] + ([mask_key] if mask_key else [])
    chain = _load([target_key], mask_key, pixdim, None) + [NormalizeToUnitd(target_key, target_norm)]
    chain += _pad(SpatialPadd, [target_key], mask_key, spatial_size=roi if mode == "3d" else (*roi, -1))
    if flip_prob > 0:
        chain.append(RandFlipd(all_keys, prob=flip_prob, spatial_axis=0))
    chain += _random_samples("3d" if mode == "3d" else "2d", all_keys, mask_key, roi, num_samples, 1, pos_neg)
    if mode != "3d":
        chain.append(SqueezeDimd(all_keys, dim=3))
    return Compose(chain)


def _divisible(mode: str, divisor: int) -> tuple[int, int, int]:
    return (divisor, divisor, divisor) if mode == "3d" else (divisor, divisor, 1)


def val_transforms(mode: str, source_norm: Any = _SOURCE_NORM, target_norm: Any = _TARGET_NORM, divisor: int = 1,
                   source_key: str = keys.SOURCE, target_key: str = keys.TARGET, mask_key: str | None = keys.MASK,
                   pixdim: Sequence[float] | None = None, dicom_rules: Any = None,
                   domain_norms: Mapping[str, Any] | None = None,
                   domain_labels: Sequence[str] | None = None) -> Compose:
    """Validation pipeline: whole (1, X, Y, Z) volumes in RAS and [-1, 1], padded to the network's divisibility.

    For 2D / 2.5D only X and Y are padded (a slice inferer runs over Z); for 3D all axes. Arguments as in
    :func:`train_transforms`.
    """
    _check_mode(mode)
    images = [source_key, target_key]
    chain = _load(images, mask_key, pixdim, dicom_rules)
    chain += _normalize(source_key, target_key, source_norm, target_norm, domain_norms, domain_labels)
    chain += _pad(DivisiblePadd, images, mask_key, k=_divisible(mode, divisor))
    return Compose(chain)


def inference_transforms(mode: str, source_norm: Any = _SOURCE_NORM, divisor: int = 1, source_key: str = keys.IMAGE,
                         pixdim: Sequence[float] | None = None, dicom_rules: Any = None) -> Compose:
    """Inference preprocessing of the source alone: load (NIfTI or DICOM folder), RAS, [-1, 1], divisible pad.

    Every geometric step is invertible, so :func:`inference_postprocessing` maps predictions back to the source's
    native grid and orientation.

    Args:
        mode: ``"2d"``, ``"2.5d"`` or ``"3d"`` (decides which axes are padded).
        source_norm: source normalisation.
        divisor: the network's spatial divisibility.
        source_key: item key (``keys.IMAGE`` for MONAI Label / Deploy style configs).
        pixdim: optional resampling spacing (mm), inverted afterwards.
        dicom_rules: series selection rules for DICOM folders.

    Returns:
        ``Compose``; pass the same object to :func:`inference_postprocessing`.
    """
    _check_mode(mode)
    chain = _load([source_key], None, pixdim, dicom_rules) + [NormalizeToUnitd(source_key, source_norm)]
    chain += _pad(DivisiblePadd, [source_key], None, k=_divisible(mode, divisor))
    return Compose(chain)


def _round(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x)


def inference_postprocessing(preprocessing: Compose, pred_key: str = keys.PRED, source_key: str = keys.IMAGE,
                             target_norm: Any = _TARGET_NORM, output_dir: str | None = None,
                             output_postfix: str = "sct") -> Compose:
    """Map a prediction in [-1, 1] to int16 HU on the source's native grid.

    Steps (MONAI_NOTES section 6): scale [-1, 1] -> [0, a_max - a_min] so that air is 0 *before* inversion
    (``Invertd`` pads undone crops with 0; in [-1, 1] units 0 would be about +1024 HU), invert the preprocessing
    (padding, resampling, orientation), shift by a_min to HU, round, cast to int16, optionally save as NIfTI.

    Args:
        preprocessing: the ``Compose`` from :func:`inference_transforms` that produced the source.
        pred_key: prediction key, (1, X, Y, Z) in [-1, 1] on the preprocessed grid.
        source_key: the preprocessed source key (its applied operations are replayed in reverse).
        target_norm: the target's ``range`` normalisation (a_min, a_max in HU).
        output_dir: when set, write ``<source name>_<output_postfix>.nii.gz`` there.
        output_postfix: file name postfix.

    Returns:
        ``Compose``; afterwards ``data[pred_key]`` is an int16 MetaTensor in HU with the source's original affine.
    """
    if _norm_value(target_norm, "type", "range") != "range":
        raise ValueError("inference_postprocessing: the target normalisation must be a 'range' (HU window).")
    a_min = float(_norm_value(target_norm, "a_min", keys.HU_MIN))
    a_max = float(_norm_value(target_norm, "a_max", keys.HU_MAX))
    chain = [
        ScaleIntensityRanged(pred_key, a_min=keys.UNIT_MIN, a_max=keys.UNIT_MAX, b_min=0.0, b_max=a_max - a_min, clip=True),
        Invertd(pred_key, transform=preprocessing, orig_keys=source_key, nearest_interp=False, to_tensor=True),
        ShiftIntensityd(pred_key, offset=a_min),
        Lambdad(pred_key, func=_round),
        CastToTyped(pred_key, dtype=torch.int16),
    ]
    if output_dir is not None:
        chain.append(SaveImaged(pred_key, output_dir=output_dir, output_postfix=output_postfix, output_ext=".nii.gz",
                                output_dtype=np.int16, separate_folder=False, resample=False, print_log=False))
    return Compose(chain)
