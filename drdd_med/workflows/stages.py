"""Staged training for the bundle: resumable stage checkpoints, skip-when-complete, EMA model, final export.

Each stage (``noise``, ``residual``, or ``joint`` for DRDD; ``regression`` for the direct-regression method) is a
stock MONAI trainer whose networks train through :class:`NetworkTraining` (Adam, warm-up + cosine LR, EMA), plus a
:class:`StageCheckpoint`, Ignite's ``Checkpoint`` writing ``<model_dir>/<stage>_checkpoint.pt`` every ``interval``
iterations and at the end. The file holds the stage's network, optimizer, LR scheduler and EMA state dicts plus
the trainer's ``state_dict`` (iteration, epoch length, epochs): tensors and plain Python types only, so it loads
with ``torch.load(weights_only=True)``.

:func:`run_stage` loads that checkpoint before running the trainer:

- no checkpoint: train from iteration 0;
- an unfinished one: log ``resuming <stage> stage from iteration N`` and continue from there (same optimizer, LR
  schedule and EMA);
- a finished one (iteration >= epochs x epoch_length, or the shorter length a time budget gave the stage,
  :mod:`drdd_med.workflows.budget`): load the weights and skip the stage, because Ignite would restart a finished
  engine from scratch.

:func:`export_model` then writes ``model.pt`` (one :class:`~drdd_med.networks.DRDDNet` state dict of the EMA weights
of both stages, or the :class:`~drdd_med.networks.RegressionNet`'s) and ``model_config.json``, which is all
inference needs.

Example (what ``train.json`` wires up)::

    optim = NetworkTraining("noise", net.noise_net, ModelEMA(net.noise_net, decay=0.99), iterations=1600)
    ckpt = StageCheckpoint("models/noise_checkpoint.pt", optim.save_dict, interval=100)
    trainer = SupervisedTrainer(..., optimizer=optim.optimizer, train_handlers=[optim])
    run_stage("noise", trainer, ckpt)  # attaches ckpt, resumes or skips, runs
    export_model(model_config, "models", ["models/noise_checkpoint.pt", "models/residual_checkpoint.pt"])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint
from monai.handlers import LrScheduleHandler
from monai.optimizers import WarmupCosineSchedule
from torch import nn

from drdd_med.engines.ema import ModelEMA
from drdd_med.io.atomic import atomic_file
from drdd_med.networks.drdd_net import NOISE, RESIDUAL, DRDDNet, unwrap
from drdd_med.networks.regression import RegressionNet
from drdd_med.workflows.budget import BUDGET_KEY, stage_length

__all__ = ["NetworkTraining", "StageCheckpoint", "run_stage", "ema_network", "export_model", "role_networks",
           "require_method", "is_rank0", "TRAINER_KEY", "ROLES", "REGRESSION"]

logger = logging.getLogger(__name__)

#: Key of the trainer's ``state_dict`` (``{"epoch_length", "iteration", "max_epochs"}``) in a stage checkpoint.
TRAINER_KEY = "trainer"
#: The two networks of a DRDDNet; a checkpoint stores ``<role>_net``, ``<role>_ema``, ``<role>_optimizer``, ...
ROLES = (NOISE, RESIDUAL)
#: The role of a RegressionNet, the one network of the ``regression`` method (``regression_ema``, ...).
REGRESSION = "regression"


def is_rank0() -> bool:
    """True unless this is a non-zero rank of a distributed run."""
    return idist.get_rank() == 0


def role_networks(network: nn.Module) -> dict[str, nn.Module]:
    """The networks a model's stage checkpoints train, by role: ``noise`` and ``residual`` of a DRDDNet, or
    ``regression`` (the whole network) of a RegressionNet."""
    net = unwrap(network)
    if isinstance(net, RegressionNet):
        return {REGRESSION: net}
    return {role: getattr(net, f"{role}_net") for role in ROLES}


def require_method(configured: str, method: str, run_id: str) -> None:
    """Refuse to run ``run_id``, which trains a ``method`` model, when the bundle's ``method`` is ``configured``.

    Raises:
        ValueError: naming the ``--method`` override to add.
    """
    if str(configured).lower() != method:
        raise ValueError(f"run id {run_id!r} trains a {method} model but the bundle's method is {configured!r}; add "
                         f"--method {method}.")


class StageCheckpoint(Checkpoint):
    """The resumable checkpoint of one training stage: Ignite's ``Checkpoint`` keeping one file, ``path``.

    Ignite collects the state dicts (unwrapping DDP) and decides when a save is new (iteration as priority, one file
    kept). The file is written on rank 0 by :func:`~drdd_med.io.atomic.atomic_file` rather than Ignite's
    ``DiskSaver``: for a fixed file name ``Checkpoint`` calls a save handler's ``remove`` on the previous file
    before writing the next one, which leaves no checkpoint if the process is killed in between, and
    ``DiskSaver``'s modes ignore the umask, unlike every other output.

    Args:
        path: checkpoint file, e.g. ``<model_dir>/noise_checkpoint.pt``.
        save_dict: name -> object with ``state_dict`` / ``load_state_dict`` (networks, optimizers, LR schedulers,
            ``ModelEMA.ema_model``). The attached trainer is added as ``"trainer"``.
        interval: save every this many iterations (and always when the stage completes).
        stage: stage name for log messages (default: the file name without ``_checkpoint.pt``).
    """

    def __init__(self, path: str | os.PathLike, save_dict: Mapping[str, Any], interval: int = 100,
                 stage: str | None = None) -> None:
        if int(interval) < 1:
            raise ValueError(f"checkpoint interval must be >= 1 iteration, got {interval}.")
        if not save_dict or TRAINER_KEY in save_dict:
            raise ValueError(f"save_dict must name the objects to save, without the key {TRAINER_KEY!r} (the trainer "
                             f"is added on attach); got {sorted(save_dict)}.")
        self.path = Path(path)
        self.save_dict = dict(save_dict)
        self.interval = int(interval)
        self.stage = stage or self.path.name.replace("_checkpoint.pt", "")
        self.engine: Any = None
        super().__init__(self.save_dict, self._write, filename_pattern=self.path.name)

    def _write(self, checkpoint: Mapping[str, Any], filename: str, metadata: Any = None) -> None:
        if is_rank0():
            with atomic_file(self.path) as tmp:
                torch.save(checkpoint, tmp)
            logger.debug("saved %s checkpoint at iteration %d to %s", self.stage, metadata["priority"], self.path)

    def attach(self, engine: Any) -> None:
        """Save every ``interval`` iterations and on completion (attaching twice to one engine is a no-op)."""
        if self.engine is engine:
            return
        self.engine = engine
        if not hasattr(engine.state, BUDGET_KEY):
            setattr(engine.state, BUDGET_KEY, 0)
        if BUDGET_KEY not in engine.state_dict_user_keys:
            engine.state_dict_user_keys.append(BUDGET_KEY)
        self.to_save = {**self.save_dict, TRAINER_KEY: engine}
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self)

    def read(self) -> dict[str, Any] | None:
        """The checkpoint's content (``weights_only=True``), or None when there is none yet.

        Raises:
            ValueError: the file is unreadable (names the file and the fix).
        """
        if not self.path.is_file():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupted file, wrong format: torch raises several types
            raise ValueError(f"{self.path}: unreadable {self.stage} checkpoint ({type(exc).__name__}: {exc}); delete "
                             "it to retrain this stage from the start.") from exc

    def load(self, engine: Any = None, names: Sequence[str] | None = None) -> int:
        """Load the saved objects (all, or ``names``) and, with ``engine``, its iteration; return that iteration.

        The engine keeps its configured ``max_epochs`` and ``epoch_length`` (so that more epochs continue a finished
        stage); only the iteration (and the epoch derived from it) and the length a time budget gave the stage
        (:data:`~drdd_med.workflows.budget.BUDGET_KEY`) come from the checkpoint. Returns 0 when there is no
        checkpoint.

        Raises:
            ValueError: the checkpoint does not match the configured objects (other network size, mode, ...).
        """
        state = self.read()
        if state is None:
            return 0
        to_load = {name: self.save_dict[name] for name in (self.save_dict if names is None else names)}
        missing = [name for name in to_load if name not in state]
        if missing:
            raise ValueError(f"{self.path}: no {missing} in the {self.stage} checkpoint (it has {sorted(state)}); "
                             "delete it to retrain this stage.")
        try:
            Checkpoint.load_objects(to_load, state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ValueError(f"{self.path}: the {self.stage} checkpoint does not match the configured objects "
                             f"(network preset, mode or optimizer changed?): {' '.join(str(exc).split())[:300]}. Use "
                             "the original settings, or delete the file to retrain this stage.") from exc
        trainer_state = state.get(TRAINER_KEY, {})
        iteration = int(trainer_state.get("iteration", 0))
        if engine is not None:
            engine.state.iteration = iteration
            engine.state.epoch = iteration // int(engine.state.epoch_length)
            setattr(engine.state, BUDGET_KEY, int(trainer_state.get(BUDGET_KEY, 0) or 0))
        return iteration

    def load_weights(self) -> int:
        """Load only the networks and EMAs (``*_net``, ``*_ema``) of a finished or partial stage, if any."""
        names = [n for n in self.save_dict if n.endswith("_net") or n.endswith("_ema")]
        iteration = self.load(names=names)
        if iteration:
            logger.info("loaded the %s stage's weights (iteration %d) from %s", self.stage, iteration, self.path)
        return iteration


class NetworkTraining:
    """How one network trains in a stage: Adam, MONAI's ``WarmupCosineSchedule`` stepped every iteration, its EMA.

    Adam runs its fused kernel (one pass over all parameters instead of a dozen small ops per tensor): on 2 CPU
    threads it made a ``lean`` network step 17 % faster (4.03 -> 4.70 it/s, bf16, 8 x 64² crops; the whole bundle loop
    3.1 -> 3.2-3.4 it/s on a 2-vCPU Xeon); its state dict is
    the same as the plain Adam's, so older checkpoints resume.

    Attached as a train handler, it steps the schedule and then the EMA. ``save_dict`` names the parts for the stage
    checkpoint: ``<role>_net``, ``<role>_optimizer``, ``<role>_lr_scheduler``, ``<role>_ema``. A stage that trains
    two networks (the joint stage) has one of these per network.

    Args:
        role: checkpoint name prefix: ``noise``, ``residual`` or ``regression``.
        network: the network to train (its parameters go to the optimizer).
        ema: the network's :class:`~drdd_med.engines.ema.ModelEMA`, shared by the stages that train it.
        iterations: the stage's length, the schedule's ``t_total``.
        learning_rate: Adam's learning rate after warm-up.
        warmup_iterations: iterations of linear warm-up.
    """

    def __init__(self, role: str, network: nn.Module, ema: ModelEMA, iterations: int, learning_rate: float = 1e-3,
                 warmup_iterations: int = 0) -> None:
        params = list(network.parameters())
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
        self.optimizer = torch.optim.Adam(params, lr=float(learning_rate), fused=fused)
        self.lr_scheduler = WarmupCosineSchedule(self.optimizer, warmup_steps=int(warmup_iterations),
                                                 t_total=int(iterations))
        self.ema = ema
        self.save_dict = {f"{role}_net": network, f"{role}_optimizer": self.optimizer,
                          f"{role}_lr_scheduler": self.lr_scheduler, f"{role}_ema": ema.ema_model}

    def attach(self, engine: Any) -> None:
        LrScheduleHandler(self.lr_scheduler, epoch_level=False, print_lr=False).attach(engine)
        self.ema.attach(engine)


def run_stage(stage: str, trainer: Any, checkpoint: StageCheckpoint) -> int:
    """Run one training stage: resume from its checkpoint, or skip it when the checkpoint says it is complete.

    Args:
        stage: stage name for log messages.
        trainer: a MONAI trainer (``state.max_epochs`` and ``state.epoch_length`` set).
        checkpoint: the stage's :class:`StageCheckpoint`; attached to ``trainer`` here unless it already is, after
            the trainer's own handlers (EMA, LR schedule), so that it saves their updated state.

    Returns:
        The trainer's iteration when the stage ends.
    """
    checkpoint.attach(trainer)
    done = checkpoint.load(trainer)
    total = stage_length(trainer)
    if done >= total:
        shortened = " (shortened by the time budget)" if getattr(trainer.state, BUDGET_KEY, 0) else ""
        logger.info("%s stage is complete (iteration %d of %d%s, %s); skipping it. Delete that file to retrain it.",
                    stage, done, total, shortened, checkpoint.path)
        return done
    if done > 0:
        logger.info("resuming %s stage from iteration %d of %d (%s)", stage, done, total, checkpoint.path)
    else:
        logger.info("training %s stage: %d iterations (%d epochs x %d)", stage, total, trainer.state.max_epochs,
                    trainer.state.epoch_length)
    trainer.run()
    return int(trainer.state.iteration)


def ema_network(network: nn.Module, noise_ema: ModelEMA, residual_ema: ModelEMA) -> DRDDNet:
    """A :class:`DRDDNet` made of the two stages' EMA networks (shared, so it follows their updates).

    Args:
        network: the trained DRDDNet (possibly DDP-wrapped), for its attributes.
        noise_ema: EMA of ``network.noise_net``.
        residual_ema: EMA of ``network.residual_net``.
    """
    net = unwrap(network)
    ema = DRDDNet(residual_ema.ema_model.module, noise_ema.ema_model.module, noise_conditioned=net.noise_conditioned,
                  noise_level=float(net.noise_level), divisor=net.divisor, source_channels=net.source_channels,
                  target_channels=net.target_channels)
    return ema.to(net.noise_level.device).eval()


def export_model(model_config: Any, model_dir: str | os.PathLike, checkpoints: Sequence[str | os.PathLike],
                 weights_name: str = "model.pt") -> Path | None:
    """Write ``<model_dir>/model.pt`` (EMA weights of every trained network) and ``<model_dir>/model_config.json``.

    Each existing checkpoint contributes the EMA weights it holds for the config's network (``noise_ema`` /
    ``residual_ema`` of a DRDD model, ``regression_ema`` of a regression model; :func:`role_networks`), later files
    overriding earlier ones. A network no checkpoint has trained keeps its initial weights, with a warning.
    Only rank 0 writes.

    Args:
        model_config: the :class:`~drdd_med.workflows.model_config.ModelConfig` of the trained network.
        model_dir: output folder.
        checkpoints: stage checkpoint files, e.g. the noise and the residual stage's, or the regression stage's.
        weights_name: weights file name.

    Returns:
        The weights path (None on ranks > 0).

    Raises:
        ValueError: none of the checkpoints exists, or one is unreadable or does not fit the configured network.
    """
    if not is_rank0():
        return None
    network = model_config.build_network()
    roles = role_networks(network)
    trained: dict[str, Path] = {}
    for file in map(Path, checkpoints):
        emas = {f"{role}_ema": ModelEMA(module).ema_model for role, module in roles.items()}
        checkpoint = StageCheckpoint(file, emas)
        state = checkpoint.read()
        if state is None:
            continue
        checkpoint.load(names=[name for name in checkpoint.save_dict if name in state])
        for role, module in roles.items():
            ema = emas[f"{role}_ema"]
            if int(ema.n_averaged) > 0:
                module.load_state_dict(ema.module.state_dict())
                trained[role] = file
    if not trained:
        raise ValueError(f"none of {[str(c) for c in checkpoints]} holds trained weights for a {model_config.method} "
                         "model; train the bundle first (run id 'training', 'train_noise', 'train_residual' or "
                         "'train_joint'; 'train_regression' with --method regression).")
    for role in roles:
        if role not in trained:
            logger.warning("the %s network has not been trained (no %s checkpoint); model.pt holds its initial weights",
                           role, role)
    model_dir = Path(model_dir)
    weights = model_dir / weights_name
    with atomic_file(weights) as tmp:
        torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, tmp)
    model_config.save(model_dir / "model_config.json")
    logger.info("exported %s (%s) and model_config.json", weights,
                ", ".join(f"{role} from {path.name}" for role, path in trained.items()))
    return weights
