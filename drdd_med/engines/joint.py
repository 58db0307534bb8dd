"""Joint DRDD training (the reference code's mode, METHOD.md §5.2): both stage losses on every paired batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys
from torch.optim import Optimizer

from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.engines.prepare_batch import NoisePrepareBatch, ResidualPrepareBatch
from drdd_med.engines.stage_inferers import NoiseStageInferer, ResidualStageInferer
from drdd_med.keys import SOURCE, TARGET
from drdd_med.networks.drdd_net import unwrap

__all__ = ["JointTrainer", "LOSS_RESIDUAL", "LOSS_NOISE", "PRED_NOISE"]

#: Extra keys of ``engine.state.output`` (the residual prediction is under ``pred``, the total loss under ``loss``).
LOSS_RESIDUAL = "loss_residual"
LOSS_NOISE = "loss_noise"
PRED_NOISE = "pred_noise"


class JointTrainer(SupervisedTrainer):
    """SupervisedTrainer computing the residual and the noise loss on each paired batch (one backward pass).

    The iteration fires the standard ``IterationEvents`` (FORWARD_COMPLETED, LOSS_COMPLETED, BACKWARD_COMPLETED,
    MODEL_COMPLETED), so MONAI/Ignite handlers and :class:`~drdd_med.engines.ema.ModelEMA` attach as usual.
    t and ε are drawn independently for the two losses (the code shares t; both are valid, METHOD.md §5.1).

    Args:
        device, max_epochs, train_data_loader: as for ``SupervisedTrainer``.
        network: a DRDDNet.
        optimizer: optimizer of the residual net (or of both nets when ``noise_optimizer`` is None).
        loss_function: elementwise or reduced loss, e.g. ``torch.nn.MSELoss()`` (default L2) or ``L1Loss``.
        scheduler: the DRDD scheduler.
        noise_optimizer: optional second optimizer for the noise net (the code uses two Adam optimisers).
        source_key, target_key: batch keys.
        noise_loss_weight: weight of the noise loss in the total.
        grad_clip_norm: global gradient-norm clip over both nets (the code uses 1.0); None disables it.
        precision: ``"fp32"`` or ``"bf16"`` autocast of both network calls (see :mod:`drdd_med.runtime`).
        residual_timesteps: the timesteps the residual loss draws t from (``ResidualPrepareBatch(timesteps=...)``);
            None draws from every t.
        kwargs: other ``SupervisedTrainer`` arguments (handlers, amp, ...); ``prepare_batch`` and ``inferer`` are
            set by this class.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Any,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        scheduler: DRDDScheduler,
        noise_optimizer: Optimizer | None = None,
        source_key: str = SOURCE,
        target_key: str = TARGET,
        noise_loss_weight: float = 1.0,
        grad_clip_norm: float | None = None,
        generator: torch.Generator | None = None,
        precision: str = "fp32",
        residual_timesteps: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        for key in ("prepare_batch", "inferer"):
            if key in kwargs:
                raise ValueError(f"JointTrainer sets {key} itself; do not pass it.")
        super().__init__(
            device=device, max_epochs=max_epochs, train_data_loader=train_data_loader, network=network,
            optimizer=optimizer, loss_function=loss_function,
            prepare_batch=ResidualPrepareBatch(scheduler, source_key, target_key, generator=generator,
                                               timesteps=residual_timesteps),
            inferer=ResidualStageInferer(scheduler, precision), **kwargs,
        )
        conditioned = bool(getattr(unwrap(network), "noise_conditioned", False))
        self.noise_prepare_batch = NoisePrepareBatch(scheduler, target_key, source_key, conditioned, generator)
        self.noise_inferer = NoiseStageInferer(scheduler, precision)
        self.noise_optimizer = noise_optimizer
        self.noise_loss_weight = float(noise_loss_weight)
        self.grad_clip_norm = grad_clip_norm

    def _optimizers(self) -> list[Optimizer]:
        return [self.optimizer] + ([self.noise_optimizer] if self.noise_optimizer is not None else [])

    def _iteration(self, engine: JointTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        to = (engine.state.device, engine.non_blocking)
        x0, residual, _, r_kwargs = engine.prepare_batch(batchdata, *to, **engine.to_kwargs)
        n_x0, noise_target, _, n_kwargs = engine.noise_prepare_batch(batchdata, *to, **engine.to_kwargs)
        engine.state.output = {Keys.IMAGE: r_kwargs["source"], Keys.LABEL: x0}
        engine.network.train()
        for opt in engine._optimizers():
            opt.zero_grad(set_to_none=engine.optim_set_to_none)

        def forward_and_loss() -> torch.Tensor:
            out = engine.state.output
            out[Keys.PRED] = engine.inferer(x0, engine.network, **r_kwargs)
            out[PRED_NOISE] = engine.noise_inferer(n_x0, engine.network, **n_kwargs)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            loss_r = engine.loss_function(out[Keys.PRED], residual).mean()
            loss_n = engine.loss_function(out[PRED_NOISE], noise_target).mean()  # ε or x0
            out[LOSS_RESIDUAL], out[LOSS_NOISE] = loss_r.detach(), loss_n.detach()
            out[Keys.LOSS] = loss_r + engine.noise_loss_weight * loss_n
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
            return out[Keys.LOSS]

        use_scaler = engine.amp and engine.scaler is not None
        if use_scaler:
            with torch.autocast("cuda", **engine.amp_kwargs):
                loss = forward_and_loss()
            engine.scaler.scale(loss).backward()
        else:
            loss = forward_and_loss()
            loss.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if engine.grad_clip_norm is not None:
            if use_scaler:
                for opt in engine._optimizers():
                    engine.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(engine.network.parameters(), engine.grad_clip_norm)
        for opt in engine._optimizers():
            if use_scaler:
                engine.scaler.step(opt)
            else:
                opt.step()
        if use_scaler:
            engine.scaler.update()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
