"""Evaluate synthetic CT against real CT: SynthRAD2023/2025 metrics, tissue MAE, trivial baselines, montages.

Metrics are computed on whole 3D volumes in HU on the source's native grid (EVALUATION.md §1.3), inside the body
mask when the case has one. Two trivial baselines put the model's numbers in context:

- :func:`constant_water_baseline`: 0 HU inside the body mask, -1000 HU outside;
- :func:`fit_linear_baseline`: a least-squares line from percentile-normalised MR to HU, fitted inside the mask on
  training pairs.

A model that does not beat both has learned nothing useful. On the phantom, a third reference row shows how far
from the floor a model is: :class:`PhantomOracleBaseline`, the sCT of a perfect tissue segmentation of the MR
(:mod:`drdd_med.data.phantom.oracle`).

:func:`evaluate_cases` is the one scorer: the training report and ``evaluate.json``
(:func:`drdd_med.workflows.report.evaluate_bundle`), ``drdd-med evaluate`` and the benchmarks call it. Each case's
CT, mask and (when a baseline or the montage needs it) MR are read once and shared by every method.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drdd_med import keys

__all__ = [
    "METRIC_NAMES", "CaseBaseline", "CaseVolumes", "LinearBaseline", "PhantomOracleBaseline", "axial_axis",
    "case_metrics", "constant_water_baseline", "evaluate_cases", "fit_linear_baseline", "format_table", "load_volume",
    "trivial_baselines",
]

logger = logging.getLogger(__name__)

#: Metric keys of every case, in table order (SynthRAD2023: psnr_2023 / ssim_2023; SynthRAD2025: psnr_2025 /
#: ms_ssim_2025; MAE is the same in both; the rest are drdd_med diagnostics, not SynthRAD: MAE per CT class, the
#: bias, and the through-plane consistency of :func:`drdd_med.metrics.functional.through_plane_consistency`).
METRIC_NAMES = ("mae", "psnr_2023", "ssim_2023", "psnr_2025", "ms_ssim_2025", "mae_air", "mae_soft_tissue",
                "mae_bone", "mean_error", "through_plane_sct", "through_plane_ct", "through_plane_ratio",
                "in_plane_ratio", "stripe_ratio")
#: A model predictor: source path -> (1, X, Y, Z) HU MetaTensor on the source's native grid.
PredictFn = Callable[[str], Any]
_ERROR_HU_MAX = 300.0  # upper end of the |error| colour scale in montages


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file or DICOM series folder on its native grid.

    Returns:
        ``(volume (X, Y, Z) float32, affine (4, 4) RAS mm)``.
    """
    from monai.transforms import LoadImage

    from drdd_med.io.nifti import VolumeReader

    image = LoadImage(reader=VolumeReader(), image_only=True, ensure_channel_first=True)(str(path))
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"{path}: expected a single-channel 3D volume, got shape {tuple(image.shape)}.")
    return np.asarray(image[0], dtype=np.float32), np.asarray(image.affine, dtype=np.float64)


def _as_array(volume: Any) -> np.ndarray:
    array = volume.detach().cpu().numpy() if hasattr(volume, "detach") else np.asarray(volume)
    return array[0] if array.ndim == 4 else array


def axial_axis(affine: np.ndarray) -> int:
    """The array axis closest to the superior-inferior direction of a RAS ``affine``: the axis that axial slices
    are stacked along."""
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    return int(np.argmax(np.abs(columns[2]) / np.linalg.norm(columns, axis=0)))


def case_metrics(ct: np.ndarray, sct: np.ndarray, mask: np.ndarray | None, axis: int = -1) -> dict[str, float]:
    """All :data:`METRIC_NAMES` for one (X, Y, Z) CT / sCT pair in HU (``mask > 0`` = body; None = everything).

    ``axis`` is the axial axis of the grid (:func:`axial_axis`), along which the through-plane figures are taken.
    """
    from drdd_med.metrics.functional import (
        synthrad2023_metrics,
        synthrad2025_metrics,
        through_plane_consistency,
        tissue_mae,
    )

    m23, m25 = synthrad2023_metrics(ct, sct, mask), synthrad2025_metrics(ct, sct, mask)
    tissue = tissue_mae(ct, sct, mask)
    return {"mae": m23["mae"], "psnr_2023": m23["psnr"], "ssim_2023": m23["ssim"], "psnr_2025": m25["psnr"],
            "ms_ssim_2025": m25["ms_ssim"],
            **{k: tissue[k] for k in ("mae_air", "mae_soft_tissue", "mae_bone", "mean_error")},
            **through_plane_consistency(ct, sct, mask, axis)}


@dataclass
class CaseVolumes:
    """One case, read once: its spec item, the CT, its affine and the mask; the MR is read on first use.

    Attributes:
        item: the spec item (``source``, ``target``, optional ``mask`` and ``id``).
        target: (X, Y, Z) float32 CT in HU on the native grid.
        affine: (4, 4) RAS affine of the CT, mm.
        mask: (X, Y, Z) body mask (``> 0`` = body), or None.
    """

    item: Mapping[str, str]
    target: np.ndarray
    affine: np.ndarray
    mask: np.ndarray | None
    _source: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def load(cls, item: Mapping[str, str]) -> CaseVolumes:
        """Read the CT and the mask of a spec item (the MR waits for :attr:`source`)."""
        target, affine = load_volume(item[keys.TARGET])
        mask = load_volume(item[keys.MASK])[0] if keys.MASK in item else None
        return cls(item, target, affine, mask)

    @property
    def source(self) -> np.ndarray:
        """The (X, Y, Z) float32 MR on its native grid, read once."""
        if self._source is None:
            self._source = load_volume(self.item[keys.SOURCE])[0]
        return self._source

    @property
    def body(self) -> np.ndarray:
        """Boolean body mask (everything without a mask)."""
        return np.ones(self.target.shape, dtype=bool) if self.mask is None else self.mask > 0


# ----------------------------------------------------------------------------------------------- baselines
class CaseBaseline:
    """Base of baselines that need the loaded case (its MR, mask or grid), not only the source path:
    ``fn(case)`` with a :class:`CaseVolumes`."""

    takes_case = True

    def __call__(self, case: CaseVolumes) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class _WaterBaseline(CaseBaseline):
    def __call__(self, case: CaseVolumes) -> np.ndarray:
        return np.where(case.body, 0.0, keys.HU_AIR).astype(np.float32)


def constant_water_baseline() -> CaseBaseline:
    """Baseline ``fn(case)``: 0 HU (water) inside the case's body mask, -1000 HU outside (everywhere 0 without mask)."""
    return _WaterBaseline()


def _normalised_source(volume: np.ndarray, lower: float, upper: float) -> np.ndarray:
    from drdd_med.transforms.array import percentile_window, window_to_unit

    a_min, a_max = percentile_window(volume, lower, upper)
    return window_to_unit(volume, a_min, a_max)


class LinearBaseline(CaseBaseline):
    """``HU = slope * percentile_normalised(MR) + intercept``, clipped to [HU_MIN, HU_MAX].

    Args:
        slope: HU per unit of normalised MR.
        intercept: HU at normalised MR 0.
        lower: lower percentile of the MR normalisation.
        upper: upper percentile.
    """

    def __init__(self, slope: float, intercept: float, lower: float = 0.5, upper: float = 99.5) -> None:
        self.slope, self.intercept, self.lower, self.upper = float(slope), float(intercept), float(lower), float(upper)

    def __call__(self, case: CaseVolumes) -> np.ndarray:
        hu = self.slope * _normalised_source(case.source, self.lower, self.upper) + self.intercept
        return np.clip(hu, keys.HU_MIN, keys.HU_MAX).astype(np.float32)

    def __repr__(self) -> str:
        return f"LinearBaseline(slope={self.slope:.2f}, intercept={self.intercept:.2f})"


def fit_linear_baseline(train_cases: Sequence[Mapping[str, str]], lower: float = 0.5, upper: float = 99.5,
                        max_voxels_per_case: int = 200_000, seed: int = 0) -> LinearBaseline:
    """Least-squares fit of HU on percentile-normalised MR inside the body masks of training pairs.

    Args:
        train_cases: items with ``source`` and ``target`` paths (and ``mask``; without one, all voxels count).
        lower: lower MR percentile (as the model's source normalisation).
        upper: upper MR percentile.
        max_voxels_per_case: random subsample per case (seeded) to bound memory.
        seed: subsampling seed.

    Raises:
        ValueError: no training pair with a target.
    """
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for case in train_cases:
        if keys.TARGET not in case:
            continue
        source, _ = load_volume(case[keys.SOURCE])
        target, _ = load_volume(case[keys.TARGET])
        if source.shape != target.shape:
            raise ValueError(f"{case[keys.TARGET]}: shape {target.shape} differs from the source's {source.shape}; "
                             "pairs must be registered and resampled to one grid.")
        body = load_volume(case[keys.MASK])[0] > 0 if keys.MASK in case else np.ones(source.shape, dtype=bool)
        x, y = _normalised_source(source, lower, upper)[body], target[body]
        if x.size > max_voxels_per_case:
            pick = rng.choice(x.size, max_voxels_per_case, replace=False)
            x, y = x[pick], y[pick]
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError("fit_linear_baseline needs at least one training pair with a target (CT).")
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64)
    design = np.stack([x, np.ones_like(x)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, y, rcond=None)
    logger.info("linear baseline: HU = %.1f * MR + %.1f (%d voxels)", slope, intercept, x.size)
    return LinearBaseline(slope, intercept, lower, upper)


class PhantomOracleBaseline(CaseBaseline):
    """The phantom's segmentation oracle (:mod:`drdd_med.data.phantom.oracle`): the floor of an MR-only model."""

    def __call__(self, case: CaseVolumes) -> np.ndarray:
        from drdd_med.data.phantom.oracle import oracle_sct

        return oracle_sct(case.item[keys.SOURCE])


def trivial_baselines(training_cases: Sequence[Mapping[str, str]], source_normalize: Mapping[str, Any],
                      evaluation_cases: Sequence[Mapping[str, str]] = ()) -> dict:
    """The reference rows every report shows: constant water, (when training pairs exist) a linear MR->HU fit with
    the model's own percentile normalisation (``source_normalize`` of its model config), and, when every one of
    ``evaluation_cases`` is an MR of a phantom subject, the phantom's segmentation ``oracle`` (the floor)."""
    from drdd_med.data.phantom.oracle import oracle_applies

    baselines: dict[str, Any] = {"water": constant_water_baseline()}
    paired = [case for case in training_cases if "target" in case]
    if paired:
        baselines["linear"] = fit_linear_baseline(paired, lower=source_normalize.get("lower", 0.5),
                                                  upper=source_normalize.get("upper", 99.5))
    if oracle_applies(evaluation_cases):
        baselines["oracle"] = PhantomOracleBaseline()
    return baselines


# ----------------------------------------------------------------------------------------------- evaluation
def _case_id(case: Mapping[str, str], index: int) -> str:
    if case.get("id"):
        return str(case["id"])
    from drdd_med.workflows.predictor import input_stem

    source = Path(case[keys.SOURCE])
    stem = input_stem(source)
    # phantom / SynthRAD layouts name files mr.nii.gz inside one folder per subject
    if stem.lower() in ("mr", "cbct", "source", "image"):
        return f"{source.parent.name}_{stem}"
    return stem or f"case{index}"


def _predict(fn: Callable[..., Any], case: CaseVolumes) -> np.ndarray:
    out = fn(case) if getattr(fn, "takes_case", False) else fn(case.item[keys.SOURCE])
    return np.asarray(_as_array(out), dtype=np.float64)


def _summary(rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    mean, std = {}, {}
    for name in METRIC_NAMES:
        values = np.array([r[name] for r in rows], dtype=np.float64)
        known = values[~np.isnan(values)]  # NaN: empty tissue class; inf: PSNR of identical volumes
        mean[name] = float(np.mean(known)) if known.size else float("nan")
        std[name] = float(np.std(known)) if known.size and np.all(np.isfinite(known)) else float("nan")
    return mean, std


def _montage(path: Path, source: np.ndarray, sct: np.ndarray, ct: np.ndarray, affine: np.ndarray, title: str,
             source_label: str = "MR") -> None:
    from drdd_med.visualize.montage import save_montage

    hu = {"vmin": -1000.0, "vmax": 1500.0, "cmap": "gray", "colorbar": True, "label": "HU"}
    error = {"vmin": 0.0, "vmax": _ERROR_HU_MAX, "cmap": "magma", "colorbar": True, "label": "|error| HU"}
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    panels = [(source_label, source, None), ("sCT", sct, hu), ("CT", ct, hu), ("|sCT - CT|", np.abs(sct - ct), error)]
    save_montage(path, panels, spacing_mm=spacing, title=title)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf / NaN: identical volumes give PSNR = inf, empty classes NaN
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _csv_text(method_rows: dict[str, list[dict[str, Any]]], summaries: dict[str, tuple[dict, dict]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "case", *METRIC_NAMES])
    for method, rows in method_rows.items():
        for row in rows:
            writer.writerow([method, row["case"], *(f"{row[n]:.6g}" for n in METRIC_NAMES)])
        mean, std = summaries[method]
        writer.writerow([method, "mean", *(f"{mean[n]:.6g}" for n in METRIC_NAMES)])
        writer.writerow([method, "std", *(f"{std[n]:.6g}" for n in METRIC_NAMES)])
    return buffer.getvalue()


def evaluate_cases(
    cases: Sequence[Mapping[str, str]],
    predict_fn: PredictFn,
    out_dir: str | os.PathLike,
    baselines: Mapping[str, Callable[..., Any]] | None = None,
    montage: bool = True,
) -> dict[str, Any]:
    """Translate every case, score it against its CT, and write ``metrics.json``, ``metrics.csv`` and montages.

    Args:
        cases: spec items with ``source`` and ``target`` paths (``mask`` optional; ``id`` optional).
        predict_fn: source path -> (1, X, Y, Z) or (X, Y, Z) sCT in HU on the source's native grid.
        out_dir: output folder; montages go to ``<out_dir>/montages/<case>.png``.
        baselines: name -> predictor, called like ``predict_fn`` or, for :class:`CaseBaseline` objects, with
            the loaded :class:`CaseVolumes` (e.g. ``{"water": constant_water_baseline(), "linear":
            fit_linear_baseline(train)}``).
        montage: write an MR | sCT | CT | |error| PNG per case.

    Returns:
        ``{"model": {metric: mean}, "model_std": {metric: std}, "baselines": {name: {metric: mean}},
        "baselines_std": {...}, "cases": [per-case model metrics with "case"], "baseline_cases": {name: [...]},
        "num_cases": n}``; the same structure is in ``metrics.json`` (non-finite values as null).

    Raises:
        ValueError: no case, a case without a target, or a CT on another grid than the sCT.
    """
    from drdd_med.io.atomic import write_atomic

    out_dir = Path(out_dir)
    if not cases:
        raise ValueError("evaluate_cases: no cases to evaluate; check the spec split.")
    missing = [str(c.get(keys.SOURCE)) for c in cases if keys.TARGET not in c]
    if missing:
        raise ValueError(f"evaluate_cases: these cases have no target CT to compare with: {missing}.")
    methods: dict[str, Callable[..., Any]] = {"model": predict_fn, **dict(baselines or {})}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
    for index, item in enumerate(cases):
        case_id, case = _case_id(item, index), CaseVolumes.load(item)
        axis = axial_axis(case.affine)
        for name, fn in methods.items():
            sct = _predict(fn, case)
            if sct.shape != case.target.shape:
                raise ValueError(f"{item[keys.SOURCE]}: {name} sCT shape {sct.shape} differs from the CT's "
                                 f"{case.target.shape} ({item[keys.TARGET]}); pairs must share one grid.")
            rows[name].append({"case": case_id, **case_metrics(case.target, sct, case.mask, axis)})
            if name == "model" and montage:
                domain = item.get(keys.DOMAIN)
                _montage(out_dir / "montages" / f"{case_id}.png", case.source, sct.astype(np.float32), case.target,
                         case.affine, f"{case_id}: MAE {rows[name][-1]['mae']:.1f} HU",
                         f"source ({domain})" if domain else "MR")
        logger.info("evaluated %s (%d/%d)", case_id, index + 1, len(cases))
    summaries = {name: _summary(r) for name, r in rows.items()}
    baseline_names = [n for n in methods if n != "model"]
    result = {
        "model": summaries["model"][0], "model_std": summaries["model"][1],
        "baselines": {n: summaries[n][0] for n in baseline_names},
        "baselines_std": {n: summaries[n][1] for n in baseline_names},
        "cases": rows["model"], "baseline_cases": {n: rows[n] for n in baseline_names}, "num_cases": len(cases),
    }
    write_atomic(out_dir / "metrics.json", json.dumps(_json_value(result), indent=1) + "\n")
    write_atomic(out_dir / "metrics.csv", _csv_text(rows, summaries))
    return result


def _cell(value: float | None, spread: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    if spread is None or not math.isfinite(spread):
        return f"{value:.3g}"
    return f"{value:.3f} ± {spread:.3f}" if abs(value) < 10 else f"{value:.1f} ± {spread:.1f}"


def format_table(result: Mapping[str, Any], metrics: Sequence[str] = ("mae", "psnr_2025", "ssim_2023", "ms_ssim_2025",
                                                                        "mae_bone", "mean_error",
                                                                        "through_plane_ratio", "stripe_ratio")) -> str:
    """Markdown table of mean ± std per method (model first, then baselines)."""
    methods = [("model", result["model"], result.get("model_std", {}))]
    methods += [(n, m, result.get("baselines_std", {}).get(n, {})) for n, m in result.get("baselines", {}).items()]
    lines = ["| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, mean, std in methods:
        cells = [_cell(mean.get(metric), std.get(metric)) for metric in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
