"""Training loops of the claims benchmark: one loop for every network, fed by the package's prepare-batch objects.

Every network is trained the same way (Adam, cosine-decayed learning rate, gradient-norm clip 1.0, random
horizontal flips, ``steps x batch`` samples drawn with a seeded generator), so only the method differs.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from drdd_med.diffusion.coupled import CoupledScheduler
from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.engines.prepare_batch import (
    CoupledPrepareBatch,
    NoisePrepareBatch,
    RegressionPrepareBatch,
    ResidualPrepareBatch,
)
from drdd_med.engines.stage_inferers import CoupledStageInferer, NoiseStageInferer, ResidualStageInferer
from drdd_med.inferers.baselines import RegressionInferer
from drdd_med.keys import SOURCE, TARGET

__all__ = ["TrainConfig", "train_stage", "KINDS"]

logger = logging.getLogger("claims")

#: Training kinds: which prepare-batch / stage inferer / parameters / loss.
KINDS = ("noise", "residual", "coupled", "regression")


@dataclass
class TrainConfig:
    """Budget and optimiser shared by every network."""

    steps: int
    batch: int
    lr: float = 1e-3
    grad_clip: float = 1.0
    log_every: int = 50


def _pieces(kind: str, model: nn.Module, level: float, conditioned: bool, gen: torch.Generator):
    """(prepare_batch, inferer, parameters, loss) for one training kind."""
    if kind == "noise":
        sched = DRDDScheduler(noise_level=level)
        return (NoisePrepareBatch(sched, conditioned=conditioned, generator=gen), NoiseStageInferer(sched),
                list(model.noise_net.parameters()), nn.MSELoss())
    if kind == "residual":
        sched = DRDDScheduler(noise_level=level)
        return (ResidualPrepareBatch(sched, generator=gen), ResidualStageInferer(sched),
                list(model.residual_net.parameters()), nn.MSELoss())
    if kind == "coupled":
        sched = CoupledScheduler(noise_level=level)
        return CoupledPrepareBatch(sched, generator=gen), CoupledStageInferer(sched), list(model.parameters()), nn.MSELoss()
    if kind == "regression":
        return RegressionPrepareBatch(), RegressionInferer(clip=False), list(model.parameters()), nn.L1Loss()
    raise ValueError(f"unknown training kind {kind!r}; choose one of {KINDS}.")


def train_stage(
    kind: str,
    model: nn.Module,
    target: torch.Tensor,
    source: torch.Tensor | None,
    cfg: TrainConfig,
    seed: int,
    level: float = 1.0,
    conditioned: bool = False,
    label: str = "",
) -> dict[str, Any]:
    """Train one network of ``model`` in place.

    Args:
        kind: ``"noise"`` (DRDDNet.noise_net; ``source`` only when ``conditioned``), ``"residual"``
            (DRDDNet.residual_net), ``"coupled"`` (CoupledNet / EntangledNet) or ``"regression"`` (RegressionNet).
        model: the module holding the network(s).
        target: (N, 1, H, W) CT slices in [-1, 1].
        source: (N, 1, H, W) matching MR slices, or None for CT-only noise training.
        cfg: the shared budget.
        seed: seed of batch sampling, flips, t and ε.
        level: noise level of the diffusion scheduler.
        conditioned: source-conditioned noise net.
        label: name used in progress lines.

    Returns:
        ``{"seconds", "final_loss" (mean of the last 10 % of steps), "steps", "batch", "samples"}``.
    """
    gen = torch.Generator().manual_seed(seed)
    prepare, inferer, params, loss_fn = _pieces(kind, model, level, conditioned, gen)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / max(cfg.steps, 1))))
    n = target.shape[0]
    needs_source = kind != "noise" or conditioned
    if needs_source and (source is None or source.shape[0] != n):
        raise ValueError(f"{label}: training kind {kind!r} needs paired source slices.")
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.randint(0, n, (cfg.batch,), generator=gen)
        flip = torch.rand(cfg.batch, generator=gen) < 0.5
        batch = {TARGET: torch.where(flip[:, None, None, None], target[idx].flip(-1), target[idx])}
        if needs_source:
            batch[SOURCE] = torch.where(flip[:, None, None, None], source[idx].flip(-1), source[idx])
        prepared = prepare(batch)
        if len(prepared) == 2:  # regression: (source, target)
            (inputs, labels), kwargs = prepared, {}
        else:
            inputs, labels, _, kwargs = prepared
        pred = inferer(inputs, model, **kwargs)
        loss = loss_fn(pred, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        lr_sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            elapsed = time.perf_counter() - start
            eta = elapsed / (step + 1) * (cfg.steps - step - 1)
            recent = sum(losses[-cfg.log_every:]) / len(losses[-cfg.log_every:])
            logger.info("  train %-28s step %5d/%d loss %.4f  %.0fs elapsed, ETA %.0fs", label, step + 1, cfg.steps,
                        recent, elapsed, eta)
    model.eval()
    tail = losses[-max(1, cfg.steps // 10):]
    return {"seconds": round(time.perf_counter() - start, 2), "final_loss": sum(tail) / len(tail),
            "steps": cfg.steps, "batch": cfg.batch, "samples": cfg.steps * cfg.batch}
