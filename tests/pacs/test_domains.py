"""A source domain per selection rule in ``pacs.json``: parsing, the bundle translator's check against the model's
domains, and translation of a retrieved series as the rule's domain or as its header shows."""

from __future__ import annotations

import numpy as np
import nibabel as nib
import pydicom
import pytest
from domain_series import write_source_series

from drdd_med.pacs.config import PacsConfigError, parse_config
from drdd_med.pacs.translator import build_translator

RULES = {"selections": [
    {"name": "t1", "domain": "t1w", "conditions": {"Modality": "(?i)MR", "SeriesDescription": "(?i)t1"}},
    {"name": "cbct", "domain": "cbct", "conditions": {"Modality": "CT", "ManufacturerModelName": "(?i)on-board"}},
    {"name": "other_mr", "conditions": {"Modality": "MR"}}]}


def _config(tmp_path, rules=RULES, **overrides):
    return parse_config({"pacs": {"host": "127.0.0.1", "port": 4242, "ae_title": "PACS"}, "rules": rules,
                         "state_dir": str(tmp_path / "state"), **overrides})


def test_each_selection_may_name_its_source_domain(tmp_path):
    config = _config(tmp_path)
    assert config.selection_domains == {"t1": "t1w", "cbct": "cbct"}  # other_mr: read from the headers
    assert [s.name for s in config.selections] == ["t1", "cbct", "other_mr"]


def test_unknown_or_conflicting_domains_are_listed(tmp_path):
    rules = {"selections": [{"name": "a", "domain": "pd", "conditions": {"Modality": "MR"}},
                            {"name": "b", "domain": "t1w", "conditions": {"Modality": "MR"}},
                            {"name": "b", "domain": "t2w", "conditions": {"Modality": "MR"}}]}
    with pytest.raises(PacsConfigError) as err:
        _config(tmp_path, rules)
    assert err.value.problems == [
        "rules.selections[0] (a).domain: 'pd' is not a source domain; use one of t1w, t2w, cbct, or leave it out to "
        "read the domain from the headers",
        "rules.selections[2] (b).domain: another selection named 'b' names domain 't1w'; give the selections "
        "distinct names"]
    with pytest.raises(PacsConfigError, match="unknown key"):
        _config(tmp_path, selection_domains={"t1": "t1w"})  # not a pacs.json key


def test_a_bundle_that_lacks_a_rule_domain_is_refused_when_loaded(tmp_path, make_tiny_bundle):
    bundle = make_tiny_bundle(seed=0, domains=["t1w", "t2w"])
    with pytest.raises(ValueError, match=r"rules selection 'cbct' \(bundle .*\): source domain 'cbct' is not one "
                                         r"this model was trained on \(t1w, t2w\)"):
        build_translator(_config(tmp_path, bundle=str(bundle), inference={"device": "cpu"}))
    with pytest.raises(ValueError, match="lists no source domains"):
        build_translator(_config(tmp_path, bundle=str(make_tiny_bundle(seed=0)), inference={"device": "cpu"}))


def test_the_bundle_translator_translates_as_the_rule_domain_or_the_header(tmp_path, make_tiny_bundle):
    bundle = make_tiny_bundle(seed=0, domains=["t1w", "cbct"])
    rng = np.random.default_rng(0)
    volume = tmp_path / "cbct.nii.gz"
    nib.save(nib.Nifti1Image(rng.uniform(-1000, 1500, (10, 8, 3)).astype(np.float32), np.diag([2, 2, 3, 1.0])),
             str(volume))
    series = tmp_path / "series"
    write_source_series(volume, series, "cbct")
    translator = build_translator(_config(tmp_path, bundle=str(bundle), inference={"device": "cpu", "threads": 1}))
    detected = translator.translate_series(series, tmp_path / "detected")
    named = translator.translate_series(series, tmp_path / "named", domain="cbct")
    description = pydicom.dcmread(detected[0]).DerivationDescription
    assert description.startswith("Synthetic CT from CBCT (cbct)") and description == \
        pydicom.dcmread(named[0]).DerivationDescription
    with pytest.raises(ValueError, match="has Modality CT, but this model translates MR"):
        translator.translate_series(series, tmp_path / "wrong", domain="t1w")
