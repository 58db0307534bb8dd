"""Tests for drdd_med.slicer_support.progress: the PROGRESS line format."""

from __future__ import annotations

import pytest

from drdd_med.slicer_support.progress import ProgressEvent, format_progress, parse_progress


@pytest.mark.parametrize(("done", "total", "message"), [(0, 1, ""), (3, 8, "noise step 1/2"), (8, 8, "done")])
def test_format_parse_round_trip(done, total, message):
    event = parse_progress(format_progress(done, total, message) + "\n")
    assert event == ProgressEvent(done, total, message)
    assert event.fraction == done / total


@pytest.mark.parametrize("line", ["INFO sampling", "PROGRESS", "PROGRESS 3/0", "PROGRESS 5/4", "PROGRESS a/b",
                                  "progress 1/2", "xPROGRESS 1/2", "PROGRESS 1 / 2"])
def test_other_lines_are_not_progress(line):
    assert parse_progress(line) is None


@pytest.mark.parametrize(("done", "total", "message"), [(2, 1, ""), (0, 0, ""), (-1, 3, ""), (1, 2, "a\nb")])
def test_format_rejects_invalid(done, total, message):
    with pytest.raises(ValueError):
        format_progress(done, total, message)
