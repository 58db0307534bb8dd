"""The multi-GPU overlay on CPU: torchrun with 2 processes and the gloo backend trains, checkpoints once, finishes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from bundle_cli import REPO, TINY, env

pytestmark = pytest.mark.slow


def torchrun(tmp_path, run_id: str, *overrides: str) -> str:
    """``run_id`` of the bundle with the multi-GPU overlay, 2 gloo processes, TINY sizes; returns the log."""
    configs = "['bundles/drdd/train.json','bundles/drdd/multi_gpu_train.json']"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "monai.bundle", "run", run_id, "--config_file", configs, "--bundle_root", str(tmp_path),
               *TINY, *overrides]
    result = subprocess.run(command, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:]  # torchrun fails when any rank fails
    return result.stdout


def test_torchrun_two_gloo_processes(tmp_path):
    log = torchrun(tmp_path, "training")
    assert log.count("creating the phantom dataset") == 1  # rank 0 writes the data, rank 1 waits
    assert log.count("noise: iteration 4/4") == 1 and log.count("residual: iteration 4/4") == 1  # rank-0 logging
    assert log.count("exported ") == 1
    models = tmp_path / "models"
    assert sorted(p.name for p in models.iterdir()) == ["model.pt", "model_config.json", "noise_checkpoint.pt",
                                                        "residual_checkpoint.pt"]
    for stage in ("noise", "residual"):
        assert torch.load(models / f"{stage}_checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 4
    state = torch.load(models / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    assert (tmp_path / "eval" / "validation" / "metrics.json").is_file()


def test_torchrun_ranks_share_one_time_budget_decision(tmp_path):
    # a stage planned far beyond a 6-second budget: every rank must stop at rank 0's length, or DDP's all-reduce
    # would wait for the rank that stopped first until the timeout
    log = torchrun(tmp_path, "train_noise", "--epoch_length", "100000", "--checkpoint_interval", "1000",
                   "--time_budget_minutes", "0.1")
    assert log.count("of the planned 100000 iterations fit the time budget") == 1, log[-3000:]  # rank 0 logs
    state = torch.load(tmp_path / "models" / "noise_checkpoint.pt", weights_only=True)["trainer"]
    assert 100 <= state["iteration"] == state["budget_iterations"] < 100000
