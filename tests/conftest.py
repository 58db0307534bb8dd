"""Fixtures shared across the test tree."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture(scope="session")
def make_tiny_bundle(tmp_path_factory) -> Callable[..., Path]:
    """``make_tiny_bundle(seed, model_version)``: a bundle folder holding a seeded, untrained tiny 2D DRDDNet and
    its ``models/model_config.json`` — enough for inference, translation and PACS tests without training."""

    def make(seed: int = 0, model_version: str = "drdd-test-1", **config) -> Path:
        import torch

        from drdd_med.workflows.model_config import ModelConfig, save_model

        torch.manual_seed(seed)
        root = tmp_path_factory.mktemp("bundle")
        model_config = ModelConfig(preset="tiny", model_version=model_version, **config)
        save_model(model_config.build_network(), model_config, root)
        return root

    return make


@pytest.fixture
def single_thread():
    """Run the test with one torch compute thread (the 2 CI cores are often shared), then restore the count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
