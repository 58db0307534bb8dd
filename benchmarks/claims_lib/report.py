"""claims.md, which_method_when.md and the PNG plots of the claims benchmark, from the state in ``claims.json``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from drdd_med.io.atomic import atomic_file, write_atomic

__all__ = ["write_report", "section_rows", "method_summary", "which_method_when", "LABELS"]

LABELS = {
    "drdd": "DRDD, bundle default",
    "drdd_uniform": "DRDD, paper's residual training (every t), 2 residual steps",
    "drdd_blind": "DRDD, MR-blind denoiser (paper)",
    "drdd_prior": "DRDD, MR-blind absolute-σ prior (σ ≤ 1)", "drdd_joint": "DRDD, joint training",
    "drdd_2.5d": "DRDD, 2.5D", "drdd_sampler_t": "DRDD, 2 residual steps, residual net trained at both only",
    "drdd_split": "DRDD, iterations split 1 : 7 (noise 400, residual 2800)",
    "drdd_mse": "DRDD, denoiser loss MSE (the previous default)",
    "drdd_mrblind": "DRDD default with the MR-blind denoiser (trained on every CT)",
    "drdd_x0": "DRDD, denoiser predicts x0 (L1)",
    "regression": "Direct regression",
    "water": "Constant water (0 HU in the body)",
    "linear": "Linear MR→HU fit",
    "oracle": "Segmentation oracle (the floor: true tissues where the MR shows them, population HU)",
}
#: The data-efficiency section's models, in the order of its table (the baselines follow).
EFFICIENCY_METHODS = ("drdd", "drdd_blind", "drdd_mrblind", "regression")
#: How the data-efficiency verdicts name each method (where its denoiser's training data matters).
EFFICIENCY_NAMES = {"drdd": "DRDD default (MR-conditioned denoiser, trained on the kept pairs)",
                    "drdd_blind": "DRDD, paper training, with the MR-blind denoiser trained on every CT",
                    "drdd_mrblind": "DRDD default with the MR-blind denoiser trained on every CT",
                    "regression": "regression"}
#: The budget section's curves, in the order of its table.
BUDGET_METHODS = ("drdd", "drdd_mse", "drdd_uniform", "regression")
#: (metric key of evaluate_cases, column title, decimals); a column shows only when the scorer gives its metric.
METRICS = (("mae", "MAE HU", 1), ("mae_bone", "bone", 0), ("mae_soft_tissue", "soft tissue", 0), ("mae_air", "air", 0),
           ("mean_error", "bias HU", 0), ("psnr_2025", "PSNR dB", 2), ("ssim_2023", "SSIM", 3),
           ("through_plane_ratio", "through-plane ratio", 2), ("stripe_ratio", "stripe ratio", 2))


def section_rows(state: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """The rows of a finished section ([] when it has not run)."""
    sec = state.get("sections", {}).get(section, {})
    return [state["rows"][key] for key in sec.get("rows", [])] if sec.get("status") == "done" else []


def _metrics(rows: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [m for m in METRICS if any(m[0] in r["mean"] for r in rows)]


def _num(value: Any, digits: int, spread: Any = None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:.{digits}f}"
    return text + (f" ± {spread:.{digits}f}" if spread is not None and math.isfinite(spread) else "")


def _duration(row: dict[str, Any]) -> str:
    from drdd_med.workflows.progress import format_duration

    return format_duration(row["train_seconds"]) if "train_seconds" in row else "–"


def _iterations(row: dict[str, Any]) -> str:
    return " + ".join(f"{n}" for n in row.get("iterations", {}).values()) or "–"


def method_summary(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Per method of the ``methods`` section: mean over seeds of the per-seed means, and their std (None with one
    seed); the first seed's row supplies cost and budget."""
    rows = section_rows(state, "methods")
    out = []
    for method in sorted(dict.fromkeys(r["method"] for r in rows), key=list(LABELS).index):
        mine = [r for r in rows if r["method"] == method]
        summary = {**mine[0], "seeds": [r.get("seed") for r in mine], "mean": {}, "spread": {}}
        for key in {k for r in mine for k in r["mean"]}:
            values = np.array([np.nan if r["mean"].get(key) is None else r["mean"][key] for r in mine], dtype=float)
            summary["mean"][key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            summary["spread"][key] = float(np.nanstd(values, ddof=1)) if len(mine) > 1 else None
        out.append(summary)
    return out


def _table(rows: list[dict[str, Any]], first: str, label, extra: dict[str, Any] | None = None,
           spread: str = "std") -> list[str]:
    """Markdown table: ``label(row)`` | metrics (mean ± ``row[spread]``) | ``extra`` columns (title -> fn(row))."""
    if not rows:
        return ["(not run)"]
    metrics, extra = _metrics(rows), extra or {}
    lines = ["| " + " | ".join([first, *(m[1] for m in metrics), *extra]) + " |", "|---" * (1 + len(metrics)
                                                                                              + len(extra)) + "|"]
    for r in rows:
        cells = [_num(r["mean"].get(k), d, (r.get(spread) or {}).get(k)) for k, _, d in metrics]
        lines.append("| " + " | ".join([label(r), *cells, *(fn(r) for fn in extra.values())]) + " |")
    return lines


_COST = {"U-Net calls": lambda r: str(r.get("network_calls", "–")),
         "sampling s/case": lambda r: _num(r.get("sample_seconds_per_case"), 1),
         "iterations per stage": _iterations, "training": _duration}


def _calibration(r: dict[str, Any], key: str, digits: int) -> str:
    return _num(r["calibration"][key], digits) if "calibration" in r else "–"


def _pivot(rows: list[dict[str, Any]], column: str, label, methods: tuple[str, ...]) -> list[str]:
    """MAE (and training minutes) of ``methods`` by ``column`` value."""
    if not rows:
        return ["(not run)"]
    values = sorted({r[column] for r in rows}, reverse=column == "fraction")
    lines = ["| method | " + " | ".join(label(v, rows) for v in values) + " |", "|---" * (len(values) + 1) + "|"]
    for method in methods:
        cells = []
        for v in values:
            match = [r for r in rows if r["method"] == method and r[column] == v]
            cells.append(f"{match[0]['mean']['mae']:.1f}" + (f" ({_duration(match[0])})" if "train_seconds" in
                                                                match[0] else "") if match else "–")
        if any(c != "–" for c in cells):
            lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return lines


def _pairs_label(fraction: float, rows: list[dict[str, Any]]) -> str:
    return f"{fraction * 100:g} % ({next(r['training_pairs'] for r in rows if r['fraction'] == fraction)} pair(s))"


def _total_iterations(row: dict[str, Any]) -> int:
    """Network iterations of all stages of a row's training: its training compute."""
    return sum(row["iterations"].values())


def _budget_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**r, "budget": max(r["iterations"].values())} for r in section_rows(state, "budget")]


# ----------------------------------------------------------------------------------------------- plots
def _plots(state: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []

    def save(fig, name: str) -> None:
        with atomic_file(out / name) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)
        made.append(name)

    def curve(name: str, rows, x, xlabel: str, title: str, methods=("drdd", "regression"), log=False) -> None:
        if len({x(r) for r in rows}) < 2:
            return
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for method in methods:
            mine = sorted((r for r in rows if r["method"] == method), key=x)
            if mine:
                ax.plot([x(r) for r in mine], [r["mean"]["mae"] for r in mine], "o-", label=LABELS[method])
        ax.set(xlabel=xlabel, ylabel="test MAE in the body (HU)", title=title)
        if log:
            ax.set_xscale("log")
            ticks = sorted({x(r) for r in rows})
            ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
            ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, name)

    # iterations, not minutes: the runs of a merged report may come from VMs of different speeds
    curve("claims_budget.png", _budget_rows(state), _total_iterations,
          "network iterations in all (training compute)", "MAE vs training budget", BUDGET_METHODS, True)
    curve("claims_data_efficiency.png", section_rows(state, "data_efficiency"), lambda r: 100 * r["fraction"],
          "training pairs (%)", "Data efficiency", (*EFFICIENCY_METHODS, "linear", "oracle"), True)
    curve("claims_noise_level.png", section_rows(state, "noise_level"), lambda r: r["noise_level"], "noise level σ_n",
          "DRDD: noise level (both stages retrained)", ("drdd_uniform",))
    curve("claims_steps.png", [r for r in section_rows(state, "steps")
                               if not r["subtract_noise"] and r.get("noise_field") != "independent"],
          lambda r: r["network_calls"], "U-Net calls (residual + noise steps)", "DRDD: sampling steps",
          ("drdd", "drdd_uniform"))
    samples = section_rows(state, "samples")
    if len(samples) > 1:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        n = [r["num_samples"] for r in samples]
        ax[0].plot(n, [r["mean"]["mae"] for r in samples], "o-")
        ax[0].set(xlabel="samples N", ylabel="MAE of the N-sample mean (HU)", xscale="log", title="Posterior mean")
        twin = ax[0].twinx()
        twin.plot(n, [r["sample_seconds_per_case"] for r in samples], "s--", color="gray")
        twin.set_ylabel("sampling s per case", color="gray")
        calibrated = [r for r in samples if "calibration" in r]
        for r in calibrated:
            deciles = r["calibration"]["cases"][0]["decile_error"]
            ax[1].plot(range(1, 11), deciles, "o-", label=f"N = {r['num_samples']}, ρ = "
                                                          f"{r['calibration']['spearman']:.2f}")
        ax[1].set(xlabel="std decile (1 = most certain)", ylabel="mean |error| (HU)",
                  title="Uncertainty map calibration (first case)")
        if calibrated:
            ax[1].legend(fontsize=8)
        for a in ax:
            a.grid(alpha=0.3)
        save(fig, "claims_samples.png")
    h = state.get("sections", {}).get("harmonization", {})
    if h.get("status") == "done":
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.errorbar(h["levels"], h["mmd2_mr_ct"], yerr=h["mmd2_mr_ct_std"], fmt="o-", label="MMD²(noisy MR, noisy CT)")
        ax.plot(h["levels"], h["mmd2_mr_clean_mr"], "s--", label="MMD²(noisy MR, clean MR)")
        ax.set(xlabel="added Gaussian noise σ", title="Prop. 3.1: noise harmonises MR and CT")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        save(fig, "claims_harmonization.png")
    if _example(state, out / "claims_examples.png"):
        made.append("claims_examples.png")
    return made


def _example(state: dict[str, Any], path: Path) -> bool:
    """MR | CT | sCT of DRDD and regression | DRDD std map, in the three planes, for the first scored case."""
    from drdd_med.visualize.montage import save_montage
    from drdd_med.workflows.evaluate import load_volume

    methods = {r["method"]: r for r in section_rows(state, "methods") if r.get("seed") == state["config"]["seeds"][0]}
    samples = [r for r in section_rows(state, "samples") if r["num_samples"] > 1]
    case = state["data"]["cases"][0]
    files = [(f"{LABELS[m]}", Path(methods[m]["files"]) / "sct" / f"{case['id']}_sct.nii.gz")
             for m in ("drdd", "regression") if m in methods]
    files = [(title, f) for title, f in files if f.is_file()]  # a merged run may lack an earlier run's files
    if not files or not Path(case["target"]).is_file():
        return False
    hu = {"vmin": -1000.0, "vmax": 1500.0, "cmap": "gray"}
    ct, affine = load_volume(case["target"])
    panels = [("MR", load_volume(case["source"])[0], None), ("CT", ct, hu)]
    panels += [(title, load_volume(f)[0], hu) for title, f in files]
    if samples and (Path(samples[-1]["files"]) / "sct" / f"{case['id']}_sct_std.nii.gz").is_file():
        std = load_volume(Path(samples[-1]["files"]) / "sct" / f"{case['id']}_sct_std.nii.gz")[0]
        panels.append((f"DRDD std, N = {samples[-1]['num_samples']}", std, {"cmap": "magma", "vmin": 0.0,
                                                                           "colorbar": True, "label": "HU"}))
    save_montage(path, panels, spacing_mm=np.linalg.norm(affine[:3, :3], axis=0), title=f"{case['id']} (test)")
    return True


# ----------------------------------------------------------------------------------------------- text
def _noise_field_note(state: dict[str, Any]) -> list[str]:
    """A line naming the slices' noise field of the DRDD rows, as each row recorded it (the default changed)."""
    names = {"shared": "one noise field shared by every axial slice",
             "correlated": "an AR(1) noise field along z, adjacent-slice correlation {}"}
    fields = sorted({(r["noise_field"], r.get("noise_correlation")) for r in state["rows"].values()
                     if r.get("noise_field") and r["noise_field"] != "independent"}, key=str)
    if not fields:
        return []
    return ["- Noise field of the DRDD rows (except the \"noise drawn per voxel\" one): "
            + "; ".join(f"`{f}`, {names.get(f, f).format(rho)}" for f, rho in fields)
            + ". `benchmarks/results/noise_field.md` compares the fields."]


def _setup(state: dict[str, Any]) -> list[str]:
    cfg, meta, data = state["config"], state["meta"], state["data"]
    runs = meta["runs"]
    ph = data["phantom"]
    trainings = state["trainings"].values()
    load = [v for t in trainings for v in (t["load_before"][0], t["load_after"][0])]
    return [
        f"- Data: the bundle's phantom, {'×'.join(map(str, ph['shape']))} voxels of "
        f"{'×'.join(f'{s:g}' for s in ph['spacing_mm'])} mm (seed {ph['seed']}): {data['training_cases']} training "
        f"pairs, {data['unpaired_target_cases']} CT-only subjects, {data['validation_cases']} validation and "
        f"{data['test_cases']} test cases. Scored on the **{cfg['split']}** split.",
        "- Training: `monai.bundle.run(<run id>, config_file='bundles/drdd/train.json', ...)` — the bundle's stage "
        "trainers, EMA, warm-up + cosine LR, checkpoints, export and validation report — with these overrides only: "
        f"`{cfg['bundle'] or 'none'}` for every run, plus seed, output folder, datalist and the row's own setting "
        "(noise level, epochs, mode, method, ...). Per-run settings and measurements: the trainings table below.",
        "- Scoring: `SCTPredictor.from_bundle(run)` (the `translate` path: whole volumes, native grid, HU) and "
        "`drdd_med.workflows.evaluate.evaluate_cases` (the training report's scorer: SynthRAD 2023/2025 metrics and "
        "tissue MAE inside the body mask); ± is the std over seeds in the method table, else over cases.",
        *_noise_field_note(state),
        f"- Machine: {meta['cpu']}, {meta['cpus']} CPU(s) available, {meta['threads']} torch thread(s), device "
        f"{meta['device']}, precision {meta['precision']}; 1-minute load average "
        + (f"{min(load):.1f}–{max(load):.1f} around the trainings" if load else "not recorded")
        + ". Wall-clock of each run: "
        + "; ".join(f"`{r['command']}` ({r['seconds'] / 60:.1f} min{_run_settings(r, meta)})" for r in runs)
        + (" (partial runs of one setup, merged by `--merge`)" if len(runs) > 1 else "")
        + ". Training minutes are wall-clock from the run's start to "
        "its last stage checkpoint (the in-training validation included, export and report excluded); on shared "
        "cores they are inflated by other work, and runs made on other days ran on VMs of other speeds: compare "
        "iterations across runs, minutes only within one run.",
    ]


def _run_settings(run: dict[str, Any], meta: dict[str, Any]) -> str:
    """``"; threads 2; precision fp32"`` when a run's recorded settings differ from the report's machine line."""
    differ = [(k, run[k]) for k in ("threads", "precision", "device") if k in run and run[k] != meta.get(k)]
    return "".join(f"; {k} {v}" for k, v in differ)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


def which_method_when(state: dict[str, Any]) -> str:
    """The "Which method when" summary; every number comes from ``state``."""
    meta = state["meta"]
    lines = ["## Which method when", "",
             "_Generated by `python benchmarks/claims.py` from `claims.json`; the setup is in `claims.md`._", ""]
    if meta.get("quick"):
        lines += ["**QUICK MODE** — pipeline check at toy sizes; these numbers mean nothing.", ""]
    if meta.get("partial"):
        lines += ["**PARTIAL** — some sections have not run; bullets without data are left out.", ""]
    summary = {s["method"]: s for s in method_summary(state)}
    drdd, reg = summary.get("drdd"), summary.get("regression")
    calibrated: list[dict[str, Any]] = []
    loss: dict[str, float] = {}
    if drdd and reg:
        d, r = drdd["mean"]["mae"], reg["mean"]["mae"]
        lines.append(f"- **Default budget** ({_iterations(drdd)} iterations, {len(drdd['seeds'])} seed(s)): DRDD "
                     f"{_num(d, 1, drdd['spread']['mae'])} HU against regression {_num(r, 1, reg['spread']['mae'])} HU "
                     f"({_ratio(d, r)} regression's MAE) — **{'DRDD' if d < r else 'regression'} is better**. DRDD "
                     f"costs {drdd['network_calls']} U-Net passes over the volume "
                     f"({drdd['sample_seconds_per_case']:.1f} s per case) against 1 "
                     f"({reg['sample_seconds_per_case']:.1f} s), and trained {_duration(drdd)} against "
                     f"{_duration(reg)}.")
        for b in ("water", "linear", "oracle"):
            if b in summary:
                lines.append(f"  {LABELS[b]}: {summary[b]['mean']['mae']:.1f} HU.")
    budget = _budget_rows(state)
    # equal compute = equal network iterations: a DRDD iteration of either stage costs one U-Net forward and backward
    # pass, as a regression iteration does (the lean residual and regression nets are the same network); training
    # minutes of runs made at other times on a shared VM are not comparable, iterations are
    regs = {_total_iterations(r): r for r in budget if r["method"] == "regression"}
    pairs = [(row, regs[_total_iterations(row)]) for row in budget
             if row["method"] == "drdd" and _total_iterations(row) in regs]
    if pairs:
        text = "; ".join(f"DRDD {d['mean']['mae']:.1f} HU after {_iterations(d)} iterations ({_duration(d)}) vs "
                         f"regression {r['mean']['mae']:.1f} HU after {_iterations(r)} ({_duration(r)}) "
                         f"({_ratio(d['mean']['mae'], r['mean']['mae'])})" for d, r in pairs)
        close = [d for d, r in pairs if d["mean"]["mae"] <= 1.05 * r["mean"]["mae"]]
        lines.append("- **Equal compute** (each DRDD budget against the regression run with as many network "
                     f"iterations in all): {text}. "
                     + (f"DRDD comes within 5 % of regression from {_iterations(close[0])} iterations."
                        if close else "No measured budget brings DRDD within 5 % of regression."))
    samples = section_rows(state, "samples")
    if samples:
        text = ", ".join(f"N = {r['num_samples']}: {r['mean']['mae']:.1f} HU ({r['sample_seconds_per_case']:.1f} s)"
                         for r in samples)
        lines.append(f"- **Samples**: MAE of the N-sample mean (sampling time per case): {text}.")
        calibrated = [r for r in samples if "calibration" in r]
        if calibrated:
            c = calibrated[-1]["calibration"]
            lines.append(f"- **Uncertainty map** (N = {calibrated[-1]['num_samples']}): Spearman(std, |error|) = "
                         f"{c['spearman']:.2f} inside the body; the {100 * c['cases'][0]['top_fraction']:g} % most "
                         f"uncertain voxels carry {c['top_error']:.0f} HU mean error against {c['rest_error']:.0f} HU "
                         "elsewhere. Regression gives no such map.")
    eff = section_rows(state, "data_efficiency")
    fractions = sorted({r["fraction"] for r in eff})
    if len(fractions) > 1:
        for method in EFFICIENCY_METHODS:
            by = {r["fraction"]: r["mean"]["mae"] for r in eff if r["method"] == method}
            if fractions[0] in by and fractions[-1] in by:
                loss[method] = by[fractions[0]] - by[fractions[-1]]
        if "regression" in loss and len(loss) > 1:
            text = ", ".join(f"{EFFICIENCY_NAMES[m]} {loss[m]:+.1f} HU" for m in loss)
            blind = loss.get("drdd_mrblind", loss.get("drdd_blind"))
            verdict = ("" if blind is None else " — the DRDD whose denoiser sees every CT loses "
                       + ("less than regression" if blind < loss["regression"] else "no less than regression")
                       + f" ({blind:+.1f} vs {loss['regression']:+.1f} HU, one training each: differences of a few HU"
                       " are within run-to-run noise).")
            fewest = {r["method"]: r["mean"]["mae"] for r in eff
                      if r["fraction"] == fractions[0] and r["method"] in loss}
            best = min(fewest, key=fewest.get)
            lines.append(f"- **Data efficiency** ({_pairs_label(fractions[-1], eff)} → "
                         f"{_pairs_label(fractions[0], eff)}), MAE lost: {text}{verdict} Lowest MAE with "
                         f"{_pairs_label(fractions[0], eff)}: {EFFICIENCY_NAMES[best]}, {fewest[best]:.1f} HU.")
    for section, column, name in (("noise_level", "noise_level", "noise level σ_n"),
                                  ("steps", "network_calls", "steps")):
        rows = [r for r in section_rows(state, section)
                if not r.get("subtract_noise") and r.get("noise_field") != "independent"]
        if len(rows) > 1:
            best = min(rows, key=lambda r: r["mean"]["mae"])
            text = ", ".join(f"{_step_label(r) if section == 'steps' else format(r[column], 'g')}: "
                             f"{r['mean']['mae']:.1f}" for r in rows)
            lines.append(f"- **{name.capitalize()}** (MAE HU): {text}; best "
                         f"{_step_label(best) if section == 'steps' else format(best[column], 'g')}.")
    # each variant against the recipe it changes one thing of (NOISE_MSE, PAPER_RESIDUAL in claims.py)
    uniform, mse, was = summary.get("drdd_uniform"), summary.get("drdd_mse"), "the default with the MSE denoiser loss"
    for method, base, against in (("drdd_mse", drdd, "the default"), ("drdd_x0", drdd, "the default"),
                                  ("drdd_mrblind", drdd, "the default"),
                                  ("drdd_uniform", mse, was), ("drdd_blind", uniform, "paper training"),
                                  ("drdd_joint", uniform, "paper training"), ("drdd_2.5d", uniform, "paper training"),
                                  ("drdd_sampler_t", mse, was), ("drdd_split", mse, was)):
        if method in summary and base:
            lines.append(f"- **{LABELS[method]}**: {summary[method]['mean']['mae']:.1f} HU "
                         f"({summary[method]['mean']['mae'] - base['mean']['mae']:+.1f} HU against {against}).")
    tp = [(LABELS[m], s["mean"]["through_plane_ratio"]) for m, s in summary.items()
          if "through_plane_ratio" in s["mean"] and s["mean"]["through_plane_ratio"] is not None]
    if tp:
        lines.append("- **Through-plane** (sCT / CT mean |difference| of adjacent slices in the body; 1 = as smooth "
                     "as the CT): " + ", ".join(f"{n} {v:.2f}" for n, v in tp) + ".")
    few = few_pairs_choice(eff)
    situations = []
    if drdd and reg:
        winner = "DRDD" if drdd["mean"]["mae"] < reg["mean"]["mae"] else "Direct regression"
        uncertain = (f"DRDD with `--samples N` (Spearman {calibrated[-1]['calibration']['spearman']:.2f})"
                     if calibrated else "DRDD with `--samples N` (calibration not measured)")
        best = min(samples, key=lambda r: r["mean"]["mae"]) if samples else None
        any_cost = (f"DRDD, mean of N = {best['num_samples']} samples ({best['mean']['mae']:.1f} vs "
                    f"{reg['mean']['mae']:.1f} HU, {best['network_calls']} U-Net calls)"
                    if best and best["mean"]["mae"] < reg["mean"]["mae"] else "Direct regression")
        situations += [f"| Lowest HU error at the default budget, one sample | {winner} |",
                       f"| Lowest HU error at the default budget, sampling cost no object | {any_cost} |",
                       "| Lowest cost per volume | Direct regression (1 U-Net call) |",
                       f"| Samples or a per-voxel uncertainty map | {uncertain} |"]
    if situations or eff:
        lines += ["", "| Situation | Method (on this evidence) |", "|---|---|", *situations,
                  f"| Few pairs, plenty of unpaired CT | {few} |"]
    return "\n".join(lines) + "\n"


def few_pairs_choice(eff: list[dict[str, Any]]) -> str:
    """The "few pairs" situation: the method with the lowest MAE at the fewest training pairs measured, next to
    regression's MAE there (the choice a site with few pairs makes), or a "not measured" that says how to measure it
    (the quick-start phantom's subjects are too alike for it)."""
    missing = "not measured here (`--only data_efficiency --phantom variation=high subjects=24`)"
    fractions = sorted({r["fraction"] for r in eff})
    if len(fractions) < 2:
        return missing
    fewest = {r["method"]: r["mean"]["mae"] for r in eff
              if r["fraction"] == fractions[0] and r["method"] in EFFICIENCY_METHODS}
    if "regression" not in fewest or len(fewest) < 2:
        return missing
    best = min(fewest, key=fewest.get)
    pairs = _pairs_label(fractions[0], eff)
    if best == "regression":
        return f"Direct regression: {fewest[best]:.1f} HU with {pairs}, the lowest of the methods measured"
    return f"{EFFICIENCY_NAMES[best]}: {fewest[best]:.1f} vs regression {fewest['regression']:.1f} HU with {pairs}"


def _step_label(r: dict[str, Any]) -> str:
    model = "default" if r["method"] == "drdd" else "paper training"
    label = f"{model}, {r['residual_steps']}+{r['noise_steps']}"
    label += " (noise subtracted, no denoiser)" if r["subtract_noise"] else ""
    return label + (" (noise drawn per voxel, not shared by the slices)" if r.get("noise_field") == "independent"
                    else "")


def write_report(state: dict[str, Any], out: Path) -> None:
    """Write ``claims.md``, ``which_method_when.md`` and the PNG plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(state, out)
    which = which_method_when(state)
    write_atomic(out / "which_method_when.md", which)
    h = state["sections"].get("harmonization", {})
    calib = {"Spearman": lambda r: _calibration(r, "spearman", 2),
             "top-10 % error HU": lambda r: _calibration(r, "top_error", 0),
             "rest error HU": lambda r: _calibration(r, "rest_error", 0)}
    summary = method_summary(state)
    lines = ["# DRDD vs regression on the MR→CT phantom, trained and scored on the shipped path", "",
             which, "## Setup", "", *_setup(state), "",
             "## 1. Methods", "",
             *_table(summary, "method", lambda r: f"{LABELS[r['method']]} ({len(r['seeds'])} seed(s))"
                     if r.get("seeds", [None])[0] is not None else LABELS[r["method"]],
                     {"params": lambda r: f"{r['params'] / 1e6:.2f} M" if "params" in r else "–", **_COST},
                     spread="spread"), "",
             "Not trainable by the bundle (no run id): " + ", ".join(
                 state["sections"].get("methods", {}).get("not_in_bundle", {})) + ".", "",
             "## 2. Samples: the N-sample mean and the uncertainty map (DRDD default, seed "
             f"{state['config']['seeds'][0]})", "",
             *_table(section_rows(state, "samples"), "N", lambda r: str(r["num_samples"]), {**_COST, **calib}), "",
             "## 3. Sampling steps (the default model, and the one with the paper's residual training, which serves "
             "any residual step count)", "",
             *_table(section_rows(state, "steps"), "residual + noise steps", _step_label, _COST), "",
             "## 4. Noise level σ_n (both stages trained at each level; the paper's residual training, 2 + 2 steps)",
             "",
             *_table(section_rows(state, "noise_level"), "σ_n", lambda r: f"{r['noise_level']:g}", _COST), "",
             "## 5. Data efficiency (MAE HU; DRDD's denoiser is trained once on all CT and reused)", "",
             *_pivot(section_rows(state, "data_efficiency"), "fraction", _pairs_label,
                     (*EFFICIENCY_METHODS, "linear", "oracle")),
             "", "## 6. Training budget (MAE HU, training wall-clock)", "",
             *_pivot(_budget_rows(state), "budget", lambda v, rows: f"{v} iterations per stage", BUDGET_METHODS),
             "",
             "## 7. Harmonization (Prop. 3.1)", ""]
    if h.get("status") == "done":
        lines += [f"Unbiased MMD² between {h['slices_per_sample']} MR slices (training pairs) and as many CT slices "
                  f"(CT-only subjects), mean of {h['repeats']} noise draws; the paper's heuristic gives "
                  f"**σ* = {h['sigma_star']:g}**.", "",
                  "| added noise σ | " + " | ".join(f"{v:g}" for v in h["levels"]) + " |",
                  "|---" * (len(h["levels"]) + 1) + "|",
                  "| MMD²(noisy MR, noisy CT) | " + " | ".join(f"{v:.4f}" for v in h["mmd2_mr_ct"]) + " |",
                  "| MMD²(noisy MR, clean MR) | " + " | ".join(f"{v:.4f}" for v in h["mmd2_mr_clean_mr"]) + " |", ""]
    else:
        lines += ["(not run)", ""]
    from drdd_med.workflows.progress import format_duration

    lines += ["## Trainings", "", "| run | run id | pairs | iterations | training | whole run | CPU | threads | "
              "load before → after | validation MAE HU |", "|---" * 10 + "|"]
    for name, t in state["trainings"].items():
        lines.append(f"| {name} | `{t['run_id']}` | {t['training_pairs']} | "
                     + ", ".join(f"{k} {v}" for k, v in t["iterations"].items())
                     + (f" (noise from {t['noise_stage_from']})" if t["noise_stage_from"] else "")
                     + f" | {_duration(t)} | {format_duration(t['run_seconds'])} | "
                     f"{format_duration(t['cpu_seconds'])} | "
                     f"{t['threads']} | {t['load_before'][0]:.1f} → {t['load_after'][0]:.1f} | "
                     f"{_num(t['validation'].get('mae'), 1)} |")
    lines += ["", "## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    write_atomic(out / "claims.md", "\n".join(lines))
