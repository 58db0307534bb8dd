"""Markdown table and PNG plots of the claims benchmark, from the state stored in ``claims.json``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_report", "summarize_methods", "LABELS"]

#: Display names of the methods.
LABELS = {
    "drdd_unc": "DRDD (unconditional denoiser)",
    "drdd_cond": "DRDD (source-conditioned denoiser)",
    "coupled": "Coupled RDDM (one net)",
    "entangled": "Entangled (two nets, coupled path)",
    "regression": "Direct regression (L1)",
}
_COLS = ("mae", "mae_bone", "mae_soft_tissue", "mae_air", "mean_error", "psnr", "ssim")
_HEAD = "MAE HU | bone | soft tissue | air | bias HU | PSNR dB | SSIM"
#: Name of the hand-written "Which method when" text included in claims.md when present.
WHICH_METHOD_FILE = "which_method_when.md"


def _rows(state: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    rows = []
    for unit, result in state.get("units", {}).items():
        if unit.startswith(prefix) and result.get("status") == "done":
            rows.extend(result.get("rows", []))
    return rows


def _fmt(mean: float, std: float | None, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _digits(col: str) -> int:
    return 3 if col == "ssim" else (2 if col == "psnr" else 1)


def summarize_methods(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Per method: mean and std over seeds of the per-seed means (std None with one seed)."""
    rows = _rows(state, "methods:")
    out = []
    for method in LABELS:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        summary: dict[str, Any] = {"method": method, "seeds": sorted(r["seed"] for r in mine)}
        for col in _COLS:
            vals = np.array([r["mean"][col] for r in mine], dtype=float)
            summary[col] = float(np.nanmean(vals))
            summary[col + "_std"] = float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else None
        for col in ("network_calls", "params"):
            summary[col] = mine[0][col]
        timing = state.get("units", {}).get("timing", {})
        if timing.get("status") == "done" and method in timing.get("methods", {}):
            summary["seconds_per_slice"] = timing["methods"][method]["seconds_per_slice"]
            summary["cpu_seconds_per_slice"] = timing["methods"][method].get("cpu_seconds_per_slice")
        else:
            summary["seconds_per_slice"] = float(np.mean([r["seconds_per_slice"] for r in mine]))
        summary["train_seconds"] = float(np.mean([r["train_seconds"] for r in mine]))
        out.append(summary)
    return out


def _method_table(state: dict[str, Any]) -> list[str]:
    summary = summarize_methods(state)
    lines = [f"| Method | seeds | {_HEAD} | U-Net calls | params | CPU ms/slice | wall ms/slice | train s |",
             "|---" * 14 + "|"]
    for s in summary:
        cells = [_fmt(s[c], s[c + "_std"], _digits(c)) for c in _COLS]
        cpu = f"{s['cpu_seconds_per_slice'] * 1e3:.1f}" if s.get("cpu_seconds_per_slice") else "–"
        lines.append(f"| {LABELS[s['method']]} | {len(s['seeds'])} | " + " | ".join(cells)
                     + f" | {s['network_calls']} | {s['params'] / 1e3:.0f} k | {cpu} | {s['seconds_per_slice'] * 1e3:.1f}"
                     f" | {s['train_seconds']:.0f} |")
    return lines


def _simple_table(rows: list[dict[str, Any]], first: str, key) -> list[str]:
    lines = [f"| {first} | {_HEAD} | U-Net calls |", "|---" * 9 + "|"]
    for r in rows:
        cells = [_fmt(r["mean"][c], r["std"][c], _digits(c)) for c in _COLS]
        lines.append(f"| {key(r)} | " + " | ".join(cells) + f" | {r['network_calls']} |")
    return lines


def _data_eff_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    seed0 = state["config"]["seeds"][0]
    full = [r for r in _rows(state, f"methods:s{seed0}") if r["method"] != "entangled"]
    return full + _rows(state, "data_eff:")


def _data_eff_table(state: dict[str, Any]) -> list[str]:
    rows = _data_eff_rows(state)
    fractions = sorted({r["fraction"] for r in rows}, reverse=True)
    if not rows:
        return ["(not run yet)"]
    subj = {r["fraction"]: r["paired_subjects"] for r in rows}
    head = " | ".join(f"{f * 100:g} % ({subj[f]} subj.)" for f in fractions)
    lines = [f"| Method (MAE HU / SSIM) | {head} |", "|---" * (len(fractions) + 1) + "|"]
    for method in ("drdd_unc", "drdd_cond", "coupled", "regression"):
        cells = []
        for f in fractions:
            match = [r for r in rows if r["method"] == method and r["fraction"] == f]
            cells.append(f"{match[0]['mean']['mae']:.1f} / {match[0]['mean']['ssim']:.3f}" if match else "–")
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return lines


def _harmonization_table(h: dict[str, Any]) -> list[str]:
    lines = ["| added noise σ | " + " | ".join(f"{v:g}" for v in h["levels"]) + " |",
             "|---" * (len(h["levels"]) + 1) + "|",
             "| MMD²(noisy MR, noisy CT) | " + " | ".join(f"{v:.4f}" for v in h["mmd2_mr_ct"]) + " |",
             "| MMD²(noisy MR, clean MR) | " + " | ".join(f"{v:.4f}" for v in h["mmd2_mr_clean_mr"]) + " |"]
    return lines


def _plots(state: dict[str, Any], out: Path, work: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name: str) -> None:
        tmp = out / f".{name}.tmp-{os.getpid()}.png"
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        plt.close(fig)
        os.replace(tmp, out / name)
        made.append(name)

    rows = _data_eff_rows(state)
    if len({r["fraction"] for r in rows}) > 1:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
        for method in ("drdd_unc", "drdd_cond", "coupled", "regression"):
            mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["fraction"])
            if mine:
                x = [r["fraction"] * 100 for r in mine]
                ax[0].plot(x, [r["mean"]["mae"] for r in mine], "o-", label=LABELS[method])
                ax[1].plot(x, [r["mean"]["mae_bone"] for r in mine], "o-", label=LABELS[method])
        for a, title in zip(ax, ("MAE in body (HU)", "MAE in bone (HU)")):
            a.set_xscale("log")
            a.set_xticks([10, 25, 50, 100], ["10", "25", "50", "100"])
            a.set_xlabel("paired training subjects (%)")
            a.set_title(title)
            a.grid(alpha=0.3)
        handles, labels = ax[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, -0.08))
        save(fig, "claims_data_efficiency.png")
    noise = sorted((r for r in _rows(state, "noise:") + [r for r in _rows(state, f"methods:s{state['config']['seeds'][0]}")
                                                       if r["method"] == "drdd_unc"]), key=lambda r: r["noise_level"])
    if len(noise) > 1:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        ax[0].plot([r["noise_level"] for r in noise], [r["mean"]["mae"] for r in noise], "o-")
        ax[1].plot([r["noise_level"] for r in noise], [r["mean"]["ssim"] for r in noise], "o-")
        for a, t in zip(ax, ("MAE (HU)", "SSIM")):
            a.set_xlabel("noise level σ_n (residual net retrained per level)")
            a.set_title(f"DRDD, {t}")
            a.grid(alpha=0.3)
        save(fig, "claims_noise_level.png")
    h = state.get("units", {}).get("harmonization")
    if h and h.get("status") == "done":
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.errorbar(h["levels"], h["mmd2_mr_ct"], yerr=h["mmd2_mr_ct_std"], fmt="o-", label="MMD²(noisy MR, noisy CT)")
        ax.plot(h["levels"], h["mmd2_mr_clean_mr"], "s--", label="MMD²(noisy MR, clean MR)")
        ax.set_xlabel("added Gaussian noise σ")
        ax.set_title("Prop. 3.1: noise harmonises MR and CT")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        save(fig, "claims_harmonization.png")
    steps = _rows(state, "steps")
    if steps:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        labels = [f"{r['residual_steps']}+{r['noise_steps']}" for r in steps]
        ax.plot(labels, [r["mean"]["mae"] for r in steps], "o-")
        ax.set_xlabel("residual + noise steps")
        ax.set_ylabel("MAE (HU)")
        ax.set_title("DRDD (unconditional denoiser): steps")
        ax.grid(alpha=0.3)
        save(fig, "claims_steps.png")
    ex = work / "examples"
    methods = [m for m in LABELS if (ex / f"{m}.npy").is_file()]
    if methods and (ex / "ct.npy").is_file():
        panels = [("MR (input)", np.load(ex / "mr.npy"), (-1, 1)), ("CT (truth)", np.load(ex / "ct.npy"), (-1024, 1500))]
        panels += [(LABELS[m].replace(" (", "\n("), np.load(ex / f"{m}.npy"), (-1024, 1500)) for m in methods]
        fig, ax = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
        for a, (title, img, (lo, hi)) in zip(ax, panels):
            a.imshow(np.rot90(img), cmap="gray", vmin=lo, vmax=hi)
            a.set_title(title, fontsize=7)
            a.axis("off")
        save(fig, "claims_examples.png")
    return made


def write_report(state: dict[str, Any], out: Path, work: Path) -> None:
    """Write ``claims.md`` and the PNG plots into ``out`` (atomic writes)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg, meta, data = state["config"], state.get("meta", {}), state.get("data", {})
    plots = _plots(state, out, work)
    partial = meta.get("partial", True)
    lines = ["# DRDD claims on the MR→CT phantom (small scale)", ""]
    if partial:
        lines += ["**PARTIAL RESULTS** — not every experiment has finished. Complete them with "
                  "`python benchmarks/claims.py --resume`.", ""]
    if meta.get("quick"):
        lines += ["**QUICK MODE** — smoke-test sizes; the numbers mean nothing.", ""]
    which = out / WHICH_METHOD_FILE
    if which.is_file():
        lines += [which.read_text().strip(), ""]
    budget = f"{cfg['steps']} steps × batch {cfg['batch']}"
    lines += [
        "## Setup", "",
        f"- Data: procedural head phantom rendered at {data.get('size')}×{data.get('size')}×{data.get('depth')} voxels "
        f"({' × '.join(str(s) for s in data.get('spacing_mm', []))} mm, the default 211×211×168 mm field of view); "
        f"{data.get('paired_train_subjects')} paired training subjects ({data.get('paired_train_slices')} axial slices "
        f"with ≥ 5 % body), {data.get('unpaired_ct_subjects')} CT-only subjects ({data.get('unpaired_ct_slices')} "
        f"slices), {data.get('eval_subjects')} held-out paired subjects for evaluation ({data.get('eval_slices')} "
        "slices). 2D axial slices; MR per-volume 0.5–99.5 percentiles → [−1, 1], CT [−1024, 3071] HU → [−1, 1].",
        f"- Networks: MONAI `DiffusionModelUNet`, preset `{cfg['preset']}` for every network (the coupled net is the "
        "preset's wider single net, parameter-matched to DRDD's two; the entangled baseline is DRDD's two "
        "architectures, both source-conditioned, trained on the coupled path; regression is the residual net's "
        "architecture with source in, CT out).",
        f"- Budget per network: **{budget}** (Adam, lr {cfg['lr']:g} cosine-decayed to 0, grad-norm clip 1.0, random "
        "horizontal flips, no EMA). DRDD trains two networks with this budget each (residual on pairs; denoiser on "
        "all CT for the unconditional variant, on pairs for the conditioned one); the coupled and regression "
        "baselines one; the entangled baseline trains its two nets jointly with this budget. Losses: MSE for the "
        "diffusion models, L1 for regression.",
        f"- Sampling: DRDD 2+2 steps (η = 0), coupled/entangled {cfg['coupled_steps']} coupled steps (the entangled "
        "model calls both nets per step), regression one call. Noise level σ_n = 1.0 unless stated.",
        "- Metrics: slices stacked back into 3D volumes in HU; SynthRAD2023 MAE / PSNR / SSIM inside the body mask; "
        "MAE in bone (>300 HU), soft tissue (−400…300 HU) and air (<−400 HU) of the real CT, and the mean error (bias) "
        "— drdd_med diagnostics, not SynthRAD. Each run: mean over the evaluation volumes. Sampling cost per slice: "
        "CPU time on one thread (median of 3 runs over one "
        f"{data.get('depth')}-slice volume after a warm-up) and the best wall time of those runs. The machine was "
        "shared with other work, so wall times (and the \"train s\" column, the wall time of training the method's "
        "networks) are inflated by an uneven, varying amount; the U-Net call count and CPU time are the cost "
        "measures to compare.",
        f"- Seeds: method comparison over seeds {cfg['seeds']} (mean ± std of the per-seed means); everything else "
        f"one seed ({cfg['seeds'][0]}), ± is then the std over evaluation volumes.",
        f"- Run time: {meta.get('elapsed_seconds', 0) / 60:.1f} min in total, phantom rendering, training and "
        "evaluation included (" + ", then ".join(f"`{c}`" for c in meta.get("commands", [meta.get("command", "")]))
        + ").", "",
        "## 1. Method comparison (all paired data)", "",
        *_method_table(state), "",
        "## 2. Data efficiency (fraction of paired training subjects)", "",
        "The unconditional DRDD denoiser always trains on all CT (paired + CT-only, trained once and reused across "
        "fractions); its residual net, the conditioned denoiser, the coupled model and regression see only the "
        "paired fraction. The subsets are nested (one fixed subject permutation). The entangled baseline is left "
        "out of this sweep for time. One seed.", "",
        *_data_eff_table(state), "",
        "## 3. Sampling steps (DRDD, unconditional denoiser, same networks)", "",
        *_simple_table(_rows(state, "steps"), "res + noise steps",
                       lambda r: f"{r['residual_steps']}+{r['noise_steps']}"), "",
        "## 4. Noise level σ_n", "",
        "The residual net is retrained at each level; the unconditional denoiser trained at σ = 1 is reused for "
        "levels ≤ 1 (its time input is rescaled to the state's noise std) and retrained at levels > 1.", "",
    ]
    noise = sorted(_rows(state, "noise:") + [r for r in _rows(state, f"methods:s{cfg['seeds'][0]}")
                                             if r["method"] == "drdd_unc"], key=lambda r: r["noise_level"])
    lines += [*_simple_table(noise, "σ_n", lambda r: f"{r['noise_level']:g}"), ""]
    lines += ["## 5. Without the denoiser (subtract the injected noise instead of the noise stage)", ""]
    nd = _rows(state, "no_denoiser") + [r for r in _rows(state, f"methods:s{cfg['seeds'][0]}")
                                        if r["method"] == "drdd_unc"]
    lines += [*_simple_table(nd, "variant", lambda r: "without denoiser (x − σ_n z)" if r.get("subtract_noise")
                             else "full DRDD 2+2"), ""]
    lines += ["## 6. Harmonization (Prop. 3.1)", ""]
    h = state.get("units", {}).get("harmonization")
    if h and h.get("status") == "done":
        lines += [f"Unbiased MMD² (Gaussian kernel on pixels, median-heuristic bandwidth per level) between "
                  f"{h['slices_per_sample']} MR slices (paired training subjects) and {h['slices_per_sample']} CT "
                  f"slices (CT-only subjects), mean of {h['repeats']} noise draws. The paper's heuristic "
                  f"σ* = argmin ½·A + ½·B over these levels gives **σ* = {h['sigma_star']:g}**.", "",
                  *_harmonization_table(h), ""]
    else:
        lines += ["(not run yet)", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    text = "\n".join(lines)
    tmp = out / f".claims.md.tmp-{os.getpid()}"
    tmp.write_text(text)
    os.replace(tmp, out / "claims.md")
