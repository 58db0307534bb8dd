"""Fixtures of the engine tests: a tiny fixed paired batch and single-threaded torch for training loops."""

from __future__ import annotations

import pytest
import torch

SIZE = 16


@pytest.fixture
def single_thread():
    """Tiny convolutions run fastest single-threaded, and CI shares its cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _fixed_batch() -> dict[str, torch.Tensor]:
    """A disc phantom: target in [-0.6, 0.6], source with inverted contrast plus a gradient."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    target = (((xx**2 + yy**2) < 0.5).float() * 1.2 - 0.6)[None, None].repeat(4, 1, 1, 1)
    return {"source": -0.8 * target + 0.1 * xx, "target": target}


@pytest.fixture
def fixed_batch():
    """Factory of the fixed paired batch (B=4, 1x16x16)."""
    return _fixed_batch
