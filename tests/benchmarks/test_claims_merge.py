"""``claims_lib.merge``: partial claims runs of one setup share one report; runs of another setup are refused."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from claims_lib.merge import merge_states, recorded_params, section_params, upgrade_state  # noqa: E402

CONFIG = {"seeds": [0], "variants": [], "budgets": [8, 16], "fractions": [1.0], "noise_levels": [0.2],
          "step_pairs": [[2, 2]], "samples": [1], "mmd_levels": [0.0], "mmd_repeats": 1, "split": "test",
          "bundle": {}, "phantom": {}}


def _training(folder: str) -> dict:
    return {"recipe": "drdd", "output_dir": folder, "train_seconds": 1.0}


def _state(config: dict, trainings: dict, rows: dict, sections: dict, command: str, seconds: float) -> dict:
    return {"config": config, "trainings": trainings, "rows": {k: {"key": k, **v} for k, v in rows.items()},
            "sections": sections, "meta": {"quick": False, "runs": [{"command": command, "seconds": seconds}]}}


@pytest.fixture
def runs():
    base = _state(CONFIG, {"drdd_s0": _training("/a/drdd_s0")},
                  {"drdd_s0|": {"training": "drdd_s0", "mean": 148.6}, "water|phantom.json": {"mean": 244.3}},
                  {"methods": {"status": "done", "rows": ["drdd_s0|", "water|phantom.json"]}}, "methods", 600.0)
    # a second run of the same setup that trained drdd_s0 again (another folder) for its budget section
    budget = _state({**CONFIG, "budgets": [8, 16]},
                    {"drdd_s0": _training("/b/drdd_s0"), "drdd_s0_epochs8": _training("/b/drdd_s0_epochs8")},
                    {"drdd_s0|": {"training": "drdd_s0", "mean": 145.3},
                     "drdd_s0_epochs8|": {"training": "drdd_s0_epochs8", "mean": 160.9}},
                    {"budget": {"status": "done", "rows": ["drdd_s0_epochs8|", "drdd_s0|"], "finished": 2.0}},
                    "budget", 900.0)
    return base, budget


def test_each_section_keeps_the_models_it_measured(runs):
    base, budget = runs
    merged = merge_states([("main", base), ("budget", budget)])
    assert merged["sections"]["methods"]["rows"] == ["drdd_s0|", "water|phantom.json"]
    assert merged["sections"]["budget"]["rows"] == ["drdd_s0_epochs8|", "drdd_s0@budget|"]
    assert merged["rows"]["drdd_s0|"]["mean"] == 148.6 and merged["rows"]["drdd_s0@budget|"]["mean"] == 145.3
    assert merged["rows"]["drdd_s0@budget|"]["training"] == "drdd_s0@budget"
    assert merged["trainings"]["drdd_s0@budget"]["output_dir"] == "/b/drdd_s0"
    assert merged["trainings"]["drdd_s0"]["output_dir"] == "/a/drdd_s0"
    assert [r["command"] for r in merged["meta"]["runs"]] == ["methods", "budget"]
    assert base["rows"]["drdd_s0|"]["mean"] == 148.6 and "drdd_s0@budget" not in base["trainings"]  # inputs intact


def test_a_shared_training_is_not_renamed_and_runs_are_not_counted_twice(runs):
    base, _ = runs
    # a run resumed from a copy of base: same drdd_s0 record, base's run listed, one section of its own
    lane = _state(CONFIG, {**base["trainings"], "drdd_s1": _training("/c/drdd_s1")},
                  {**base["rows"], "drdd_s1|": {"training": "drdd_s1", "mean": 150.0}},
                  {"methods": {"status": "done", "rows": ["drdd_s0|", "drdd_s1|"], "finished": 5.0,
                               "params": {"seed": 0, "seeds": [0, 1], "variants": []}}}, "lane", 300.0)
    lane["meta"]["runs"] = base["meta"]["runs"] + lane["meta"]["runs"]
    merged = merge_states([("main", base), ("lane", lane)])
    assert merged["sections"]["methods"]["rows"] == ["drdd_s0|", "drdd_s1|"]  # the later finish wins
    assert not any("@" in name for name in merged["trainings"])
    assert [r["seconds"] for r in merged["meta"]["runs"]] == [600.0, 300.0]


def test_runs_of_another_setup_are_refused(runs):
    base, budget = runs
    budget["config"] = {**CONFIG, "phantom": {"variation": "high"}}
    with pytest.raises(ValueError, match="phantom"):
        merge_states([("main", base), ("high", budget)])
    budget["config"], budget["meta"]["quick"] = CONFIG, True
    with pytest.raises(ValueError, match="quick"):
        merge_states([("main", base), ("quick", budget)])


def test_legacy_sections_keep_the_params_they_ran_with(runs):
    base, _ = runs
    upgrade_state(base)
    base["config"] = {**CONFIG, "seeds": [0, 1]}  # a resumed run's new configuration
    assert recorded_params(base, "methods") == section_params("methods", CONFIG) != section_params(
        "methods", base["config"])
    assert recorded_params(base, "budget") is None
