"""Fixtures of the engine tests: a tiny fixed paired batch (``single_thread`` comes from tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

SIZE = 16


def _fixed_batch() -> dict[str, torch.Tensor]:
    """A disc phantom: target in [-0.6, 0.6], source with inverted contrast plus a gradient."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    target = (((xx**2 + yy**2) < 0.5).float() * 1.2 - 0.6)[None, None].repeat(4, 1, 1, 1)
    return {"source": -0.8 * target + 0.1 * xx, "target": target}


@pytest.fixture
def fixed_batch():
    """Factory of the fixed paired batch (B=4, 1x16x16)."""
    return _fixed_batch
