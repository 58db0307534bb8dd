"""Bundle data: phantom on first use, every spec problem listed before training, inference inputs."""

from __future__ import annotations

import json

import pytest

from drdd_med import keys
from drdd_med.data.spec import SpecError, load_spec
from drdd_med.workflows.data import (
    evaluation_cases,
    input_datalist,
    mask_key,
    noise_items,
    norm_dict,
    paired_items,
    prepare_spec,
)

TINY_PHANTOM = {"subjects": 3, "unpaired": 1, "seed": 0, "shape": [8, 8, 4], "spacing_mm": [26.4, 26.4, 42.0]}


@pytest.fixture(scope="module")
def phantom_spec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "phantom"
    return prepare_spec(folder / "phantom.json", folder, TINY_PHANTOM)


def test_phantom_is_created_on_first_use_and_reused(phantom_spec, tmp_path):
    folder = phantom_spec.path.parent
    assert [len(phantom_spec.items(s)) for s in ("training", "validation", "test", "unpaired_target")] == [1, 1, 1, 1]
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*.nii.gz")}
    again = prepare_spec(str(folder / "phantom.json"), folder, TINY_PHANTOM)
    assert again.items("training") == phantom_spec.items("training")
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.nii.gz")} == before  # not regenerated


def test_other_spec_is_never_generated_and_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"training": [{"source": "a.nii.gz", "target": "b.nii.gz"}],
                               "validation": [{"source": "c.nii.gz"}]}))
    with pytest.raises(SpecError) as err:
        prepare_spec(bad, tmp_path / "phantom", TINY_PHANTOM)
    message = str(err.value)
    for problem in ("training[0].source", "training[0].target", "validation[0]: missing required key 'target'"):
        assert problem in message
    assert not (tmp_path / "phantom").exists()


def test_paired_and_noise_items(phantom_spec):
    paired = paired_items(phantom_spec)
    assert set(paired[0]) == {keys.SOURCE, keys.TARGET, keys.MASK} and mask_key(paired) == keys.MASK
    pool = noise_items(phantom_spec)
    assert pool == [{keys.TARGET: item[keys.TARGET]} for item in phantom_spec.items("training")
                    + phantom_spec.items("unpaired_target")]


def test_masks_dropped_unless_every_item_has_one(phantom_spec, tmp_path):
    raw = json.loads(phantom_spec.path.read_text())
    raw["training"].append({**raw["test"][0]})
    raw["test"] = []
    del raw["training"][1]["mask"]
    edited = phantom_spec.path.parent / "edited.json"
    edited.write_text(json.dumps(raw))
    items = paired_items(load_spec(edited))
    assert mask_key(items) is None and all(keys.MASK not in item for item in items)


def test_empty_split_and_evaluation_fallback(phantom_spec, tmp_path):
    raw = json.loads(phantom_spec.path.read_text())
    raw["validation"] = []
    edited = phantom_spec.path.parent / "no_validation.json"
    edited.write_text(json.dumps(raw))
    spec = load_spec(edited)
    with pytest.raises(ValueError, match="split 'validation' is empty"):
        paired_items(spec, "validation")
    assert evaluation_cases(spec, "validation") == spec.items("test")


def test_norm_dict_matches_the_spec(phantom_spec):
    assert norm_dict(phantom_spec.source_norm) == {"type": "percentile", "lower": 0.5, "upper": 99.5}
    assert norm_dict(phantom_spec.target_norm) == {"type": "range", "a_min": keys.HU_MIN, "a_max": keys.HU_MAX}


def test_input_datalist(phantom_spec, tmp_path):
    source = phantom_spec.items("test")[0][keys.SOURCE]
    assert input_datalist(source) == [{keys.IMAGE: source}]
    assert input_datalist([source, tmp_path]) == [{keys.IMAGE: source}, {keys.IMAGE: str(tmp_path)}]
    with pytest.raises(ValueError, match="--input"):
        input_datalist("")
    with pytest.raises(ValueError, match="do not exist.*missing.nii.gz"):
        input_datalist(str(tmp_path / "missing.nii.gz"))
