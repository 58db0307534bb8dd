"""Which parts of a claims run can be reused, and one report from several runs of the same setup.

A full run is hours on two cores, so it is done as partial runs (``--only``), side by side or one after another.
Runs are compatible when they train the same models: the same bundle overrides, phantom, scored split and
``--quick`` (all in the run's configuration). The lists that size one section (noise levels, budgets, ...) are that
section's own ``params``; a finished section is rerun, reusing every recorded row, only when its params change.
"""

from __future__ import annotations

import copy
from typing import Any

#: The configuration that decides which models a run trains and how it scores them: equal in compatible runs.
SETUP_KEYS = ("bundle", "phantom", "split", "quick")
#: The configuration lists each section depends on, besides the first seed (which every one-seed section uses).
SECTION_PARAMS: dict[str, tuple[str, ...]] = {
    "harmonization": ("mmd_levels", "mmd_repeats"), "methods": ("seeds", "variants"), "samples": ("samples",),
    "steps": ("step_pairs", "noise_step_counts"), "noise_level": ("noise_levels",), "data_efficiency": ("fractions",),
    "budget": ("budgets",),
}


def section_params(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of ``cfg`` that section ``name`` depends on."""
    return {"seed": cfg["seeds"][0], **{k: cfg.get(k) for k in SECTION_PARAMS[name]}}  # None: a key added later


def upgrade_state(state: dict[str, Any]) -> dict[str, Any]:
    """Bring a state written by an earlier version to the current layout, in place; returns ``state``.

    Earlier files ran every section with the run's configuration (now each finished section keeps its ``params``),
    kept ``--quick`` only in ``meta`` (now in the configuration) and one ``commands`` list with one elapsed time
    (now ``meta["runs"]``, a ``{"command", "seconds"}`` per invocation).
    """
    meta = state.setdefault("meta", {})
    state["config"].setdefault("quick", bool(meta.get("quick")))
    for name, section in state.get("sections", {}).items():
        if section.get("status") == "done":
            section.setdefault("params", section_params(name, state["config"]))
    if "runs" not in meta:
        commands = meta.get("commands", [])
        meta["runs"] = []
        if commands:
            meta["runs"].append({"command": "; ".join(commands), "seconds": meta.get("elapsed_seconds", 0.0)})
    for legacy in ("commands", "elapsed_seconds"):
        meta.pop(legacy, None)
    return state


def recorded_params(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The params a finished section of an upgraded ``state`` ran with; None when it has not finished."""
    section = state.get("sections", {}).get(name, {})
    return section.get("params") if section.get("status") == "done" else None


def setup_difference(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The setup keys on which two configurations differ; empty when their runs are compatible."""
    return [k for k in SETUP_KEYS if a.get(k) != b.get(k)]


def merge_states(states: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One state from compatible runs, given as ``(label, state)``, the first being the base.

    Trainings and rows are united. A training recorded by two runs under one name but trained twice (another
    output folder) keeps the first run's name; the later run's copy, its rows and the sections that cite them are
    renamed ``<name>@<label>``, so that every section shows the models it measured. A section finished by several
    runs is taken from the run that finished it last. Raises:
        ValueError: when two runs differ in their setup (bundle overrides, phantom, split or ``--quick``).
    """
    (label0, first), rest = states[0], states[1:]
    merged = upgrade_state(copy.deepcopy(first))
    for label, state in rest:
        state = upgrade_state(copy.deepcopy(state))
        differ = setup_difference(merged["config"], state["config"])
        if differ:
            raise ValueError(f"{label}: another setup than {label0} ({', '.join(differ)} differ); only runs that "
                             "train the same models can share a report.")
        renamed = {name: f"{name}@{label}" for name, record in state["trainings"].items()
                   if name in merged["trainings"] and merged["trainings"][name] != record}
        keys = {}
        for key, row in state["rows"].items():
            training = row.get("training")
            if training in renamed:
                new = renamed[training] + key[len(training):]
                keys[key] = new
                merged["rows"][new] = {**row, "key": new, "training": renamed[training]}
            else:
                merged["rows"].setdefault(key, row)
        for name, record in state["trainings"].items():
            merged["trainings"].setdefault(renamed.get(name, name), record)
        for name, section in state["sections"].items():
            mine = merged["sections"].get(name, {})
            if section.get("status") != "done" or (
                    mine.get("status") == "done" and mine.get("finished", 0) >= section.get("finished", 0)):
                continue
            if "rows" in section:
                section["rows"] = [keys.get(k, k) for k in section["rows"]]
            merged["sections"][name] = section
        for spec, names in state.get("baseline_names", {}).items():
            merged.setdefault("baseline_names", {}).setdefault(spec, names)
        merged["meta"]["runs"] += [r for r in state["meta"]["runs"] if r not in merged["meta"]["runs"]]
    return merged
