"""In-memory phantom data for the claims benchmark: 2D axial training slices and 3D evaluation volumes.

The phantom is rendered directly at the benchmark's size (``make_phantom_pair`` with the default 211 x 211 x 168 mm
field of view divided into ``size x size x depth`` voxels), which is the procedural equivalent of downsampling the
96 x 96 x 48 default phantom. MR is mapped to [-1, 1] with its per-volume 0.5/99.5 percentiles, CT with the fixed
HU window [-1024, 3071] (``drdd_med.transforms.array``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from drdd_med.data.phantom import make_phantom_ct, make_phantom_pair
from drdd_med.transforms.array import percentile_window, window_to_unit

__all__ = ["PhantomData", "EvalVolume", "build_data", "FOV_MM", "UNPAIRED_OFFSET"]

#: Field of view of the default phantom (96 x 2.2 mm, 96 x 2.2 mm, 48 x 3.5 mm).
FOV_MM = (211.2, 211.2, 168.0)
#: Unpaired CT subjects use seeds [data_seed, UNPAIRED_OFFSET + j] (disjoint from the paired ones).
UNPAIRED_OFFSET = 100_000
#: Training slices need at least this fraction of body voxels.
MIN_BODY_FRACTION = 0.05


@dataclass
class EvalVolume:
    """One held-out paired subject: MR slices in [-1, 1] (Z, 1, H, W), CT in HU and body mask (H, W, Z)."""

    source: torch.Tensor
    ct_hu: np.ndarray
    mask: np.ndarray


@dataclass
class PhantomData:
    """Training slices (paired and CT-only) and evaluation volumes.

    Attributes:
        source: (N, 1, H, W) MR slices of the paired training subjects, [-1, 1].
        target: (N, 1, H, W) matching CT slices, [-1, 1].
        subject: (N,) paired-subject index of each slice.
        unpaired_target: (M, 1, H, W) CT-only slices, [-1, 1].
        eval_volumes: held-out paired subjects.
        spacing_mm: voxel size of the rendered phantom.
    """

    source: torch.Tensor
    target: torch.Tensor
    subject: torch.Tensor
    unpaired_target: torch.Tensor
    eval_volumes: list[EvalVolume]
    spacing_mm: tuple[float, float, float]
    n_train_subjects: int
    info: dict = field(default_factory=dict)

    def paired_subset(self, subjects: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(source, target) slices of the listed paired training subjects."""
        keep = torch.isin(self.subject, torch.as_tensor(subjects))
        return self.source[keep], self.target[keep]

    def all_targets(self) -> torch.Tensor:
        """Every CT training slice: paired targets and CT-only slices (the unconditional denoiser's data)."""
        return torch.cat([self.target, self.unpaired_target], dim=0)


def _slices(volume: np.ndarray) -> torch.Tensor:
    """(H, W, Z) -> (Z, 1, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.transpose(volume, (2, 0, 1))[:, None], dtype=np.float32))


def _mr_unit(mr: np.ndarray) -> np.ndarray:
    lo, hi = percentile_window(mr, 0.5, 99.5)
    return np.asarray(window_to_unit(mr.astype(np.float32), lo, hi), dtype=np.float32)


def _body_slices(mask: np.ndarray) -> np.ndarray:
    return mask.mean(axis=(0, 1)) >= MIN_BODY_FRACTION


def build_data(size: int, depth: int, n_train: int, n_eval: int, n_unpaired: int, seed: int = 0) -> PhantomData:
    """Render the phantom subjects and slice them.

    Args:
        size: in-plane voxels (H = W = size).
        depth: axial slices per volume.
        n_train: paired training subjects (seeds [seed, 0..n_train-1]).
        n_eval: held-out paired subjects (seeds [seed, n_train..]).
        n_unpaired: CT-only subjects (seeds [seed, UNPAIRED_OFFSET + j]).
        seed: data seed.
    """
    spacing = (FOV_MM[0] / size, FOV_MM[1] / size, FOV_MM[2] / depth)
    shape = (size, size, depth)
    sources, targets, subjects, evals = [], [], [], []
    for i in range(n_train + n_eval):
        mr, ct, mask, _ = make_phantom_pair([seed, i], shape=shape, spacing_mm=spacing)
        mr_u = _slices(_mr_unit(mr))
        if i < n_train:
            keep = torch.from_numpy(_body_slices(mask))
            sources.append(mr_u[keep])
            targets.append(_slices(np.asarray(window_to_unit(ct.astype(np.float32)), dtype=np.float32))[keep])
            subjects.append(torch.full((int(keep.sum()),), i, dtype=torch.long))
        else:
            evals.append(EvalVolume(source=mr_u, ct_hu=ct.astype(np.float64), mask=mask > 0))
    unpaired = []
    for j in range(n_unpaired):
        ct, mask, _ = make_phantom_ct([seed, UNPAIRED_OFFSET + j], shape=shape, spacing_mm=spacing)
        keep = torch.from_numpy(_body_slices(mask))
        unpaired.append(_slices(np.asarray(window_to_unit(ct.astype(np.float32)), dtype=np.float32))[keep])
    data = PhantomData(
        source=torch.cat(sources), target=torch.cat(targets), subject=torch.cat(subjects),
        unpaired_target=torch.cat(unpaired) if unpaired else torch.zeros(0, 1, size, size),
        eval_volumes=evals, spacing_mm=spacing, n_train_subjects=n_train,
    )
    data.info = {
        "size": size, "depth": depth, "spacing_mm": [round(s, 3) for s in spacing],
        "paired_train_subjects": n_train, "eval_subjects": n_eval, "unpaired_ct_subjects": n_unpaired,
        "paired_train_slices": int(data.source.shape[0]), "unpaired_ct_slices": int(data.unpaired_target.shape[0]),
        "eval_slices": int(sum(v.source.shape[0] for v in evals)),
        "min_body_fraction_for_training_slices": MIN_BODY_FRACTION,
    }
    return data
