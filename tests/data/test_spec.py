"""Data spec loading: a valid spec resolves; an invalid one fails with every problem listed, each path named."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from drdd_med import keys
from drdd_med.data.datalist import datalists, split_subjects
from drdd_med.data.spec import DatasetSpec, SpecError, load_spec, validate_spec_dict

REPO = Path(__file__).resolve().parents[2]


def _nifti(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), str(path))
    return str(path)


@pytest.fixture()
def good_spec(tmp_path) -> Path:
    for name in ("a/mr.nii.gz", "a/ct.nii.gz", "a/mask.nii.gz", "b/mr.nii.gz", "b/ct.nii.gz", "c/mr.nii", "x/ct.nii.gz"):
        _nifti(tmp_path / name)
    (tmp_path / "dcm").mkdir()
    (tmp_path / "dcm" / "im0.dcm").write_bytes(b"placeholder")
    spec = {"name": "t", "source": {"modality": "MR", "normalize": {"type": "percentile", "lower": 1, "upper": 99}},
            "training": [{"source": "a/mr.nii.gz", "target": "a/ct.nii.gz", "mask": "a/mask.nii.gz"}],
            "validation": [{"source": "b/mr.nii.gz", "target": "b/ct.nii.gz"}],
            "test": [{"source": "dcm"}, {"source": "c/mr.nii"}],
            "unpaired_target": [{"target": str(tmp_path / "x/ct.nii.gz")}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return tmp_path / "spec.json"


def test_valid_spec_resolves_absolute_paths_and_normalization(good_spec):
    spec = load_spec(good_spec)
    base = good_spec.parent.resolve()
    assert spec.items("training") == [{keys.SOURCE: str(base / "a/mr.nii.gz"), keys.TARGET: str(base / "a/ct.nii.gz"),
                                       keys.MASK: str(base / "a/mask.nii.gz")}]
    assert spec.items("test")[0] == {keys.SOURCE: str(base / "dcm")}
    assert (spec.source_norm.type, spec.source_norm.lower, spec.source_norm.upper) == ("percentile", 1.0, 99.0)
    assert (spec.target_norm.type, spec.target_norm.a_min, spec.target_norm.a_max) == ("range", keys.HU_MIN, keys.HU_MAX)
    # noise stage pool: training targets then unpaired; masks dropped because not every item has one
    assert spec.target_items() == [{keys.TARGET: str(base / "a/ct.nii.gz")}, {keys.TARGET: str(base / "x/ct.nii.gz")}]
    with pytest.raises(SpecError, match="with_mask=True"):
        spec.target_items(with_mask=True)
    assert datalists(spec)["noise"] == spec.target_items()


def test_spec_errors_list_every_problem_with_key_and_index(tmp_path):
    _nifti(tmp_path / "ok/mr.nii.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti at all")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty_dicom").mkdir()
    spec = {"traning": [],
            "source": {"normalize": {"type": "percentile", "lower": 99, "upper": 1}},
            "target": {"normalize": {"type": "zscore"}},
            "training": [{"source": "ok/mr.nii.gz", "target": "missing/ct.nii.gz"},
                         {"source": "bad.nii.gz"},
                         {"source": "notes.txt", "target": "empty_dicom", "label": "x.nii.gz"}],
            "test": [{"source": "ok/mr.nii.gz"}],
            "unpaired_target": [{"source": "ok/mr.nii.gz", "target": 3}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "spec.json")
    msg = str(info.value)
    expected = [
        "unknown top-level key 'traning'",
        "source.normalize: need 0 <= lower < upper <= 100",
        "target.normalize.type: must be 'percentile' or 'range'",
        f"training[0].target: {tmp_path.resolve() / 'missing/ct.nii.gz'} does not exist",
        "training[1]: missing required key 'target'",
        f"training[1].source: {tmp_path.resolve() / 'bad.nii.gz'} is unreadable as NIfTI",
        f"training[2].source: {tmp_path.resolve() / 'notes.txt'} is neither a .nii/.nii.gz file nor a DICOM series folder",
        f"training[2].target: DICOM folder {tmp_path.resolve() / 'empty_dicom'} is empty or unreadable",
        "training[2]: unexpected key 'label'",
        "test[0].source",  # shared with training[0]
        "unpaired_target[0]: unexpected key 'source'",
        "unpaired_target[0].target: must be a non-empty path string",
    ]
    for fragment in expected:
        assert fragment in msg, f"missing {fragment!r} in:\n{msg}"
    assert f"{len(expected)} problem(s)" in msg
    assert "also used in training" in msg


def test_spec_invalid_json_and_missing_file(tmp_path):
    (tmp_path / "broken.json").write_text('{"training": [}')
    with pytest.raises(SpecError, match=r"broken.json: not valid JSON \(line 1"):
        load_spec(tmp_path / "broken.json")
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.json")
    assert issubclass(SpecError, ValueError)


def test_committed_specs_match_the_json_schema_and_the_loader():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "data_specs/schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    names = sorted(p.name for p in (REPO / "data_specs").glob("*.json") if p.name != "schema.json")
    assert {"phantom.json", "synthrad2023_task1_brain.json", "synthrad2023_task2_pelvis.json"} <= set(names)
    for name in names:
        raw = json.loads((REPO / "data_specs" / name).read_text())
        jsonschema.validate(raw, schema)
        assert validate_spec_dict(raw, REPO / "data_specs", check_paths=False)[1] == [], name


@pytest.mark.parametrize("bad", [
    {"training": []},
    {"training": [{"source": "a"}]},
    {"training": [{"source": "a", "target": "b", "extra": "c"}]},
    {"training": [{"source": "a", "target": "b"}], "unpaired_target": [{"source": "a"}]},
    {"training": [{"source": "a", "target": "b"}], "target": {"normalize": {"type": "range", "a_min": "low"}}},
    {"training": [{"source": "a", "target": "b"}], "extra_split": []},
    {"training": [{"source": "a", "target": "b", "domain": "pd"}]},
    {"training": [{"source": "a", "target": "b"}], "unpaired_target": [{"target": "c", "domain": "cbct"}]},
])
def test_schema_and_loader_reject_the_same_structural_errors(bad):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "data_specs/schema.json").read_text())
    assert not jsonschema.Draft202012Validator(schema).is_valid(bad)
    assert validate_spec_dict(bad, ".", check_paths=False)[1]


def test_split_subjects_is_deterministic_disjoint_and_complete():
    ids = [f"c{i:02d}" for i in range(20)]
    split = split_subjects(ids, 0.1, 0.2, seed=3)
    assert split == split_subjects(list(reversed(ids)), 0.1, 0.2, seed=3)
    assert (len(split["validation"]), len(split["test"]), len(split["training"])) == (2, 4, 14)
    assert sorted(sum(split.values(), [])) == ids
    with pytest.raises(ValueError, match="none for training"):
        split_subjects(["a", "b"], 0.5, 0.5)


def test_dataset_spec_rejects_unknown_split(good_spec):
    spec: DatasetSpec = load_spec(good_spec)
    with pytest.raises(ValueError, match="expected one of"):
        spec.items("train")


def test_items_may_name_their_domain_and_get_its_normalisation(tmp_path):
    for name in ("s1/t1.nii.gz", "s1/cbct.nii.gz", "s1/ct.nii.gz", "s2/t2.nii.gz", "s2/ct.nii.gz", "u/ct.nii.gz"):
        _nifti(tmp_path / name)
    raw = {"source": {"normalize": {"type": "percentile", "lower": 2, "upper": 98}},
           "training": [{"source": "s1/t1.nii.gz", "target": "s1/ct.nii.gz", "domain": "t1w"},
                        {"source": "s1/cbct.nii.gz", "target": "s1/ct.nii.gz", "domain": "cbct"}],
           "test": [{"source": "s2/t2.nii.gz", "target": "s2/ct.nii.gz", "domain": "t2w"}],
           "unpaired_target": [{"target": "u/ct.nii.gz"}]}
    (tmp_path / "spec.json").write_text(json.dumps(raw))
    spec = load_spec(tmp_path / "spec.json")
    assert [it[keys.DOMAIN] for it in spec.items("training")] == ["t1w", "cbct"]
    assert spec.domains() == ["t1w", "t2w", "cbct"]
    cbct = spec.source_norm_for(spec.items("training")[1])
    assert (cbct.type, cbct.a_min, cbct.a_max) == ("range", keys.HU_MIN, keys.HU_MAX)
    t2 = spec.source_norm_for(spec.items("test")[0])
    assert (t2.type, t2.lower, t2.upper) == ("percentile", 0.5, 99.5)
    assert spec.source_norm_for({keys.SOURCE: "x"}) == spec.source_norm  # no domain: the spec's own
    # the CT both domains share is one noise-stage item
    assert spec.target_items() == [{keys.TARGET: str((tmp_path / "s1/ct.nii.gz").resolve())},
                                   {keys.TARGET: str((tmp_path / "u/ct.nii.gz").resolve())}]


def test_domain_key_errors_and_specs_without_domains_behave_as_before(good_spec):
    raw = json.loads(good_spec.read_text())
    raw["training"][0]["domain"] = "flair"
    raw["unpaired_target"][0]["domain"] = "cbct"
    _, errors = validate_spec_dict(raw, good_spec.parent)
    assert "training[0].domain: unknown domain 'flair' (known: t1w, t2w, cbct)." in errors
    assert any(e.startswith("unpaired_target[0]: unexpected key 'domain'") for e in errors)
    raw = json.loads(good_spec.read_text())
    raw["training"].append(dict(raw["training"][0], source="b/mr.nii.gz"))  # two untagged items share a target
    raw["validation"] = []
    (good_spec.parent / "dup.json").write_text(json.dumps(raw))
    spec = load_spec(good_spec.parent / "dup.json")
    assert spec.domains() == [] and len(spec.target_items()) == 3  # kept twice, as always
