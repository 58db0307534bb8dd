"""Prop. 3.1 check: MMD between MR and CT slice distributions after adding Gaussian noise of increasing level.

The kernel is Gaussian on flattened pixels with the median-heuristic bandwidth recomputed at every level (a fixed
bandwidth would make every MMD vanish trivially once the noise dominates the pairwise distances). Also computes the
paper's noise-level heuristic (Sec. 4.5 / METHOD.md §7): A(σ) = MMD(noisy MR, noisy CT), B(σ) = MMD(noisy MR,
clean MR), both min-max normalised over the levels, σ* = argmin 0.5·A + 0.5·B. The package has no such check:
it measures a claim of the paper, not something users run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["mmd2", "harmonization", "spec_slices"]

#: Slices with less body than this fraction are left out (they are mostly air in both modalities).
MIN_BODY_FRACTION = 0.05


def spec_slices(items: Sequence[Mapping[str, str]], key: str, norm) -> torch.Tensor:
    """(N, 1, H, W) axial slices in [-1, 1] of the ``key`` volumes of spec items, mapped with the spec's ``norm``
    (percentile window or fixed range, as the bundle's transforms), keeping slices with enough body (``mask``)."""
    from drdd_med.transforms.array import percentile_window, window_to_unit
    from drdd_med.workflows.evaluate import load_volume

    slices = []
    for item in items:
        volume = load_volume(item[key])[0]
        window = percentile_window(volume, norm.lower, norm.upper) if norm.type == "percentile" else (norm.a_min,
                                                                                                        norm.a_max)
        unit = np.asarray(window_to_unit(volume, *window), dtype=np.float32)
        body = (load_volume(item["mask"])[0] > 0).mean(axis=(0, 1)) >= MIN_BODY_FRACTION
        slices.append(torch.from_numpy(np.ascontiguousarray(np.moveaxis(unit[:, :, body], 2, 0)))[:, None])
    return torch.cat(slices)


def mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD² of two samples (n, d) and (m, d) with a Gaussian kernel, median-heuristic bandwidth."""
    z = torch.cat([x, y]).double()
    d2 = torch.cdist(z, z).pow(2)
    n = x.shape[0]
    off = d2[~torch.eye(d2.shape[0], dtype=torch.bool)]
    gamma = 1.0 / max(float(off.median()), 1e-12)
    k = torch.exp(-gamma * d2)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    m = y.shape[0]
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def harmonization(mr: torch.Tensor, ct: torch.Tensor, levels: list[float], repeats: int, seed: int,
                  max_slices: int = 256) -> dict:
    """MMD² vs noise level.

    Args:
        mr: (N, 1, H, W) MR slices in [-1, 1] (paired training subjects).
        ct: (M, 1, H, W) CT slices in [-1, 1] (the CT-only subjects, so the two samples are unpaired).
        levels: noise stds to add (0 = clean).
        repeats: noise draws per level (the result is their mean and std).
        seed: seed of the subsampling and the noise.
        max_slices: slices per sample.

    Returns:
        ``{"levels", "mmd2_mr_ct" (A), "mmd2_mr_ct_std", "mmd2_mr_clean_mr" (B), "sigma_star", "objective"}``.
    """
    gen = torch.Generator().manual_seed(seed)
    x = mr[torch.randperm(mr.shape[0], generator=gen)[:max_slices]].flatten(1)
    y = ct[torch.randperm(ct.shape[0], generator=gen)[:max_slices]].flatten(1)
    a_mean, a_std, b_mean = [], [], []
    for sigma in levels:
        a_vals, b_vals = [], []
        for _ in range(repeats):
            xn = x + sigma * torch.randn(x.shape, generator=gen)
            yn = y + sigma * torch.randn(y.shape, generator=gen)
            a_vals.append(mmd2(xn, yn))
            b_vals.append(mmd2(xn, x))
        a = torch.tensor(a_vals)
        a_mean.append(float(a.mean()))
        a_std.append(float(a.std()) if repeats > 1 else 0.0)
        b_mean.append(float(torch.tensor(b_vals).mean()))

    def norm(v: list[float]) -> list[float]:
        lo, hi = min(v), max(v)
        return [(u - lo) / (hi - lo) if hi > lo else 0.0 for u in v]

    objective = [0.5 * a + 0.5 * b for a, b in zip(norm(a_mean), norm(b_mean))]
    star = levels[min(range(len(levels)), key=objective.__getitem__)]
    return {"levels": list(levels), "mmd2_mr_ct": a_mean, "mmd2_mr_ct_std": a_std, "mmd2_mr_clean_mr": b_mean,
            "objective": objective, "sigma_star": star, "repeats": repeats, "slices_per_sample": int(x.shape[0])}
