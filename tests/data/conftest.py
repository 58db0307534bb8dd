"""Fixtures of the data tests: phantom grids with the default field of view, coarse enough for unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_grid() -> dict:
    """48 x 48 x 24 voxels of 4.4 x 4.4 x 7 mm: contrast and artefacts are still measurable."""
    return {"shape": (48, 48, 24), "spacing_mm": (4.4, 4.4, 7.0)}


@pytest.fixture(scope="session")
def tiny_grid() -> dict:
    """24 x 24 x 12 voxels of 8.8 x 8.8 x 14 mm: for file layout and spec tests."""
    return {"shape": (24, 24, 12), "spacing_mm": (8.8, 8.8, 14.0)}
