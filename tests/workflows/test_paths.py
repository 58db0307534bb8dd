"""bundle_root(): the running ConfigWorkflow's config folder, whatever the current directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

from monai.bundle import ConfigWorkflow

from drdd_med.workflows.paths import bundle_root, default_bundle_dir


def test_bundle_root_is_the_config_folder_not_the_cwd(tmp_path, monkeypatch):
    bundle = tmp_path / "some" / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "train.json").write_text(json.dumps({
        "imports": ["$import drdd_med", "$import drdd_med.workflows.paths"],
        "bundle_root": "$drdd_med.workflows.paths.bundle_root()",
        "model_dir": "$@bundle_root + '/models'",
        "run": ["$@model_dir"],
    }))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    wf = ConfigWorkflow(config_file=str(Path("..") / "some" / "bundle" / "train.json"), workflow_type=None,
                        meta_file=None, logging_file=False)
    wf.initialize()
    # evaluated the way `monai.bundle run` does it: inside ConfigWorkflow.run()
    assert wf.run() == [os.path.join(str(bundle.resolve()), "models")]


def test_bundle_root_override_wins(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps({
        "imports": ["$import drdd_med", "$import drdd_med.workflows.paths"],
        "bundle_root": "$drdd_med.workflows.paths.bundle_root()",
        "run": ["$@bundle_root"]}))
    wf = ConfigWorkflow(config_file=str(tmp_path / "train.json"), workflow_type=None, meta_file=None,
                        logging_file=False, bundle_root="/data/elsewhere")
    wf.initialize()
    assert wf.run() == ["/data/elsewhere"]


def test_outside_a_workflow_it_is_the_checkout_bundle():
    expected = Path(__file__).resolve().parents[2] / "bundles" / "drdd"
    assert default_bundle_dir() == expected
    assert bundle_root() == str(expected)
