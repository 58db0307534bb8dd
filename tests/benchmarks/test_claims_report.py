"""``claims_lib.report``: "Which method when" names, for few pairs, the method that measured lowest there."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from claims_lib.report import which_method_when  # noqa: E402


def _efficiency_state(maes: dict[tuple[str, float], float]) -> dict:
    rows = {f"{m}|{f}": {"method": m, "fraction": f, "training_pairs": int(16 * f), "mean": {"mae": mae}}
            for (m, f), mae in maes.items()}
    return {"rows": rows, "sections": {"data_efficiency": {"status": "done", "rows": list(rows)}},
            "meta": {"quick": False, "partial": True}}


def _few_pairs_row(state: dict) -> str:
    (row,) = [line for line in which_method_when(state).splitlines() if line.startswith("| Few pairs")]
    return row


def test_every_drdd_variant_counts_and_the_lowest_at_fewest_pairs_is_named():
    state = _efficiency_state({("drdd", 1.0): 147.4, ("drdd", 0.125): 183.3,
                               ("drdd_blind", 1.0): 182.3, ("drdd_blind", 0.125): 206.2,
                               ("drdd_mrblind", 1.0): 158.1, ("drdd_mrblind", 0.125): 199.8,
                               ("regression", 1.0): 157.8, ("regression", 0.125): 211.8})
    row = _few_pairs_row(state)
    assert "DRDD default (MR-conditioned denoiser, trained on the kept pairs): 183.3 vs regression 211.8 HU with 12.5 % (2 pair(s))" in row


def test_regression_is_named_when_it_measured_lowest():
    state = _efficiency_state({("drdd", 1.0): 150.0, ("drdd", 0.5): 190.0,
                               ("regression", 1.0): 160.0, ("regression", 0.5): 170.0})
    assert "Direct regression: 170.0 HU with 50 % (8 pair(s))" in _few_pairs_row(state)


def test_a_report_without_the_section_says_how_to_measure_it():
    state = {"rows": {}, "sections": {}, "meta": {"quick": False, "partial": True}}
    assert "| Few pairs" not in which_method_when(state)
    one = _efficiency_state({("drdd", 1.0): 150.0, ("regression", 1.0): 160.0})
    assert "not measured here (`--only data_efficiency --phantom variation=high" in _few_pairs_row(one)
