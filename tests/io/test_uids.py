"""Tests for drdd_med.io.uids: determinism, separation of parts and validity."""

from __future__ import annotations

import pytest
from pydicom.uid import UID

from drdd_med.io.uids import (
    derive_uid,
    placeholder_frame_of_reference_uid,
    placeholder_study_uid,
    sct_instance_uid,
    sct_series_uid,
)

SOURCE = "1.2.3.4.5.6.7.8.9"


def test_same_inputs_same_uid_and_valid():
    uid = sct_series_uid(SOURCE, "v1")
    assert uid == sct_series_uid(SOURCE, "v1")
    assert UID(uid).is_valid and len(uid) <= 64 and uid.startswith("1.2.826.0.1.3680043.8.498.")


def test_model_version_slice_and_role_change_the_uid():
    uids = {sct_series_uid(SOURCE, "v1"), sct_series_uid(SOURCE, "v2"), sct_instance_uid(SOURCE, "v1", 0),
            sct_instance_uid(SOURCE, "v1", 1), sct_instance_uid(SOURCE, "v2", 0), placeholder_study_uid(SOURCE),
            placeholder_frame_of_reference_uid(SOURCE), sct_series_uid(SOURCE + "1", "v1")}
    assert len(uids) == 8


def test_separator_prevents_concatenation_collisions():
    assert derive_uid(["ab", "c"]) != derive_uid(["a", "bc"])
    assert sct_instance_uid("1.2.3", "v1", 11) != sct_instance_uid("1.2.3", "v11", 1)


def test_custom_prefix_is_used():
    assert sct_series_uid(SOURCE, "v1", prefix="1.2.3.4.").startswith("1.2.3.4.")
    assert sct_series_uid(SOURCE, "v1", prefix="1.2.3.4.") != sct_series_uid(SOURCE, "v1")


@pytest.mark.parametrize(
    ("parts", "prefix", "match"),
    [(["a|b"], "1.2.", "must not contain"), (["a", ""], "1.2.", "non-empty"), ([], "1.2.", "must not be empty"),
     (["a"], None, "random UID")],
)
def test_bad_parts_or_prefix_raise(parts, prefix, match):
    with pytest.raises(ValueError, match=match):
        derive_uid(parts, prefix)
