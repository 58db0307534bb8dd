"""The one DICOM selection-rule engine: each operator on real pydicom example files, and translate (the series
reader) and pacs-batch (the job config) selecting the same series with one rules file."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from drdd_med.io.dicom_rules import condition_keywords, first_match, matches_rules, parse_rules
from drdd_med.io.dicom_series import DicomSeriesError, DicomSeriesReader, find_series, load_series
from drdd_med.pacs.config import parse_config

TEST_FILES = Path(get_testdata_file("CT_small.dcm", download=False)).parent
CT5N = TEST_FILES / "dicomdirtests/98892001/CT5N"  # real 5-slice axial CT, SliceThickness 2.5, "SmartScore ..."
CT2N = TEST_FILES / "dicomdirtests/98892001/CT2N"  # its 2 scouts: LOCALIZER, SliceThickness 650, sagittal


def _header(name: str | Path) -> Dataset:
    path = name if isinstance(name, Path) else Path(get_testdata_file(name, download=False))
    return pydicom.dcmread(path, stop_before_pixels=True)


def _first(folder: Path) -> Dataset:
    return _header(sorted(folder.iterdir())[0])


@pytest.fixture
def study(tmp_path) -> Path:
    """The real CT study: the 2.5 mm axial series and its scouts in one folder."""
    shutil.copytree(CT5N, tmp_path / "study")
    for f in CT2N.iterdir():
        shutil.copy(f, tmp_path / "study" / f"scout_{f.name}")
    return tmp_path / "study"


def _pacs_selections(rules):
    return parse_config({"pacs": {"host": "127.0.0.1", "port": 104, "ae_title": "PACS"}, "rules": rules,
                         "state_dir": "state"}).selections


@pytest.mark.parametrize("condition, upper, expected", [
    ({"SliceThickness": ["<", 3.0]}, 3.0, True),  # the case the two former engines disagreed on
    ({"SliceThickness": ["<", 2.0]}, 2.0, False),
])
def test_translate_and_pacs_batch_select_the_same_series_with_one_rules_file(study, condition, upper, expected):
    rules = {"selections": [{"name": "thin", "conditions": {**condition, "Modality": "CT"}}]}
    headers = find_series(study)[str(_first(CT5N).SeriesInstanceUID)]
    assert first_match(_pacs_selections(rules), headers) == (("thin", True) if expected else (None, False))
    if expected:
        image, datasets = load_series(study, rules=rules)  # what translate / SCTPredictor(dicom_rules=...) read
        assert image.shape[-1] == 5 and datasets[0].SeriesInstanceUID == headers[0].SeriesInstanceUID
    else:
        with pytest.raises(DicomSeriesError, match="no series matches the selection rules"):
            load_series(study, rules=rules)


@pytest.mark.parametrize("condition, matching, not_matching", [
    # regular expression: searched in the value, or in any value of a multi-valued attribute
    ({"SeriesDescription": "(?i)^smartscore"}, [CT5N], [CT2N, "CT_small.dcm"]),
    ({"Modality": "^MR$"}, ["MR_small.dcm", "MR2_J2KI.dcm"], ["CT_small.dcm"]),
    ({"ImageType": "LOCAL"}, [CT2N], [CT5N]),
    # numeric ranges, bounds included; open-ended either way
    ({"SliceThickness": [2.5, 5.0]}, [CT5N, "CT_small.dcm"], ["MR_small.dcm", "MR2_J2KI.dcm"]),
    ({"SliceThickness": ["<", 3.0]}, [CT5N, "MR_small.dcm"], ["CT_small.dcm", CT2N]),
    ({"SliceThickness": [5.5, ">"]}, ["MR2_J2KI.dcm", CT2N], ["CT_small.dcm", CT5N]),
    ({"SeriesNumber": [301, 301]}, ["emri_small.dcm"], ["CT_small.dcm"]),
    # value lists: every plain value present, no "!" value present
    ({"ImageType": ["ORIGINAL", "!LOCALIZER"]}, [CT5N, "CT_small.dcm"], [CT2N, "MR_small.dcm"]),
    ({"ImageType": ["derived", "primary"]}, ["MR2_J2KI.dcm"], ["MR_small.dcm"]),  # case-insensitive
    # an absent attribute satisfies an exclusion-only list and nothing else
    ({"SeriesDescription": ["!SCOUT"]}, ["CT_small.dcm", CT5N], [CT2N]),
    ({"SeriesDescription": "(?i)."}, [CT5N], ["CT_small.dcm"]),
    ({"SliceThickness": [0, ">"]}, ["CT_small.dcm"], ["SC_rgb.dcm"]),
    # orientation: the dominant axis of the slice normal
    ({"ImageOrientationPatient": "Axial"}, [CT5N, "CT_small.dcm", "MR_small.dcm"], [CT2N, "MR2_J2KI.dcm"]),
    ({"ImageOrientationPatient": "sagittal"}, [CT2N, "MR2_J2KI.dcm"], [CT5N, "emri_small.dcm"]),
])
def test_each_operator_on_real_example_files(condition, matching, not_matching):
    heads = {name: (_first(name) if isinstance(name, Path) else _header(name)) for name in matching + not_matching}
    assert [n for n in matching if not matches_rules(heads[n], condition)] == []
    assert [n for n in not_matching if matches_rules(heads[n], condition)] == []


def test_malformed_rules_fail_when_the_reader_is_built_and_name_the_folder_in_select_series(study):
    with pytest.raises(ValueError, match="NotAKeyword"):
        DicomSeriesReader(rules={"NotAKeyword": "x"})
    with pytest.raises(DicomSeriesError, match=r"study: invalid selection rules: .*SliceThickness.*low > high"):
        load_series(study, rules={"SliceThickness": [3, 1]})

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
