from __future__ import annotations

import math

import pytest
from pydicom.dataset import Dataset

from drdd_med.pacs.selection import condition_keywords, first_match, parse_rules

RULES = {"selections": [
    {"name": "t1", "conditions": {"Modality": "(?i)MR", "SeriesDescription": "(?i)t1",
                                  "ImageType": ["ORIGINAL", "!LOCALIZER"], "SliceThickness": [0.5, 3.0],
                                  "ImageOrientationPatient": "Axial"}},
    {"name": "thick", "conditions": {"Modality": "MR", "SliceThickness": [5, ">"]}},
]}


def _ds(**attrs) -> Dataset:
    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _t1(**overrides) -> Dataset:
    attrs = {"Modality": "MR", "SeriesDescription": "T1 MPRAGE", "ImageType": ["ORIGINAL", "PRIMARY", "M"],
             "SliceThickness": 1.0, "ImageOrientationPatient": [1, 0, 0, 0, 1, 0]}
    return _ds(**{**attrs, **overrides})


def test_full_headers_select_by_regex_set_range_and_orientation():
    rules = parse_rules(RULES)
    assert first_match(rules, _t1()) == ("t1", True)
    assert first_match(rules, _t1(SeriesDescription="T2 tse")) == (None, False)
    assert first_match(rules, _t1(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])) == (None, False)
    assert first_match(rules, _t1(ImageType=["DERIVED", "PRIMARY"])) == (None, False)  # ORIGINAL required
    assert first_match(rules, _t1(SliceThickness=3.5)) == (None, False)
    assert first_match(rules, _t1(SliceThickness=6.0)) == ("thick", True)  # open-ended range of rule 2


@pytest.mark.parametrize("iop, axial", [
    ([1, 0, 0, 0, 1, 0], True),  # axial
    ([0, 1, 0, 0, 0, -1], False),  # sagittal
    ([1, 0, 0, 0, 0, -1], False),  # coronal
    ([1, 0, 0, 0, math.cos(0.5), math.sin(0.5)], True),  # axial tilted by ~29 degrees
    ([1, 0, 0, 0, math.cos(1.2), math.sin(1.2)], False),  # tilted by ~69 degrees: closer to coronal
])
def test_orientation_uses_the_dominant_axis_of_the_slice_normal(iop, axial):
    assert first_match(parse_rules(RULES)[:1], _t1(ImageOrientationPatient=iop))[1] is axial


def test_orientation_names_map_to_their_axes():
    sag = parse_rules({"selections": [{"conditions": {"ImageOrientationPatient": "Sagittal"}}]})
    cor = parse_rules({"selections": [{"conditions": {"ImageOrientationPatient": "coronal"}}]})
    assert first_match(sag, _ds(ImageOrientationPatient=[0, 1, 0, 0, 0, -1]))[1] is True
    assert first_match(cor, _ds(ImageOrientationPatient=[1, 0, 0, 0, 0, -1]))[1] is True
    assert first_match(sag, _ds(ImageOrientationPatient=[1, 0, 0, 0, 0, -1]))[1] is False


def test_cfind_identifiers_leave_unknown_attributes_undecided():
    rules = parse_rules(RULES)[:1]
    ident = _ds(Modality="MR", SeriesDescription="T1 MPRAGE", ImageType="", SliceThickness="")
    assert first_match(rules, ident, partial=True) == ("t1", None)
    assert first_match(rules, _ds(Modality="MR", SeriesDescription="T2"), partial=True) == (None, False)
    assert first_match(rules, _ds(Modality="CT"), partial=True) == (None, False)
    # the same identifier on full headers decides: a required attribute that is absent fails
    assert first_match(rules, ident) == (None, False)


def test_absent_attribute_passes_an_exclusion_only_list_on_full_headers():
    rules = parse_rules({"selections": [{"name": "x", "conditions": {"ImageType": ["!LOCALIZER"]}}]})
    assert first_match(rules, _ds(Modality="MR")) == ("x", True)


def test_every_instance_must_match():
    rules = parse_rules(RULES)[:1]
    assert first_match(rules, [_t1(), _t1()]) == ("t1", True)
    assert first_match(rules, [_t1(), _t1(ImageType=["ORIGINAL", "LOCALIZER"])]) == (None, False)


def test_parse_errors_name_every_bad_condition():
    with pytest.raises(ValueError) as err:
        parse_rules({"selections": [{"name": "a", "conditions": {"SeriesDescription": "(", "NotAKeyword": "x",
                                                                 "SliceThickness": [3, 1], "Rows": [1, 2, 3]}}]})
    text = str(err.value)
    for part in ("regular expression", "NotAKeyword", "low > high", "Rows"):
        assert part in text
    with pytest.raises(ValueError, match="selections"):
        parse_rules({"selection": []})


def test_condition_keywords_are_the_cfind_return_keys_in_order():
    assert condition_keywords(parse_rules(RULES)) == [
        "Modality", "SeriesDescription", "ImageType", "SliceThickness", "ImageOrientationPatient"]
