"""Staged training for the bundle: resumable stage checkpoints, skip-when-complete, EMA model, final export.

Each stage (``noise``, ``residual``, or ``joint`` for DRDD; ``regression`` for the direct-regression method) is a
stock MONAI trainer plus a :class:`StageCheckpoint` handler that writes ``<model_dir>/<stage>_checkpoint.pt``
atomically every ``interval`` iterations and at the end. The file holds the stage's network, optimizer, LR
scheduler and EMA state dicts plus the trainer's iteration: tensors and plain Python types only, so it loads with
``torch.load(weights_only=True)``.

:func:`run_stage` loads that checkpoint before running the trainer:

- no checkpoint: train from iteration 0;
- an unfinished one: log ``resuming <stage> stage from iteration N`` and continue from there (same optimizer, LR
  schedule and EMA);
- a finished one (iteration >= epochs x epoch_length): load the weights and skip the stage, because Ignite would
  restart a finished engine from scratch.

:func:`export_model` then writes ``model.pt`` (one :class:`~drdd_med.networks.DRDDNet` state dict of the EMA weights
of both stages, or the :class:`~drdd_med.networks.RegressionNet`'s) and ``model_config.json``, which is all
inference needs.

Example (what ``train.json`` wires up)::

    ckpt = StageCheckpoint("models/noise_checkpoint.pt", {"noise_net": net.noise_net, "noise_optimizer": opt,
                                                           "noise_ema": ema}, interval=100)
    trainer = SupervisedTrainer(..., train_handlers=[EMAHandler(ema, 1, network=net.noise_net)])
    run_stage("noise", trainer, ckpt)  # attaches ckpt, resumes or skips, runs
    export_model(model_config, "models", ["models/noise_checkpoint.pt", "models/residual_checkpoint.pt"])
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drdd_med.engines.ema import ModelEMA
from drdd_med.networks.drdd_net import NOISE, RESIDUAL, DRDDNet
from drdd_med.networks.regression import RegressionNet

__all__ = ["StageCheckpoint", "run_stage", "ema_network", "export_model", "role_networks", "require_method",
           "is_rank0", "TRAINER_KEY", "ROLES", "REGRESSION"]

logger = logging.getLogger(__name__)

#: Key of the trainer's progress (``{"iteration", "epoch_length", "max_epochs"}``) in a stage checkpoint.
TRAINER_KEY = "trainer"
#: The two networks of a DRDDNet; a checkpoint stores ``<role>_net``, ``<role>_ema``, ``<role>_optimizer``, ...
ROLES = (NOISE, RESIDUAL)
#: The role of a RegressionNet, the one network of the ``regression`` method (``regression_ema``, ...).
REGRESSION = "regression"


def is_rank0() -> bool:
    """True unless this is a non-zero rank of an initialised ``torch.distributed`` process group."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()
                and torch.distributed.get_rank() > 0)


def _unwrap(network: nn.Module) -> nn.Module:
    return network.module if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else network


def role_networks(network: nn.Module) -> dict[str, nn.Module]:
    """The networks a model's stage checkpoints train, by role: ``noise`` and ``residual`` of a DRDDNet, or
    ``regression`` (the whole network) of a RegressionNet."""
    net = _unwrap(network)
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


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files; checkpoints are shared like any other output
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class StageCheckpoint:
    """Ignite handler: the resumable checkpoint of one training stage.

    Args:
        path: checkpoint file, e.g. ``<model_dir>/noise_checkpoint.pt``.
        save_dict: name -> object with ``state_dict`` / ``load_state_dict`` (networks, optimizers, LR schedulers,
            :class:`~drdd_med.engines.ema.ModelEMA`). The attached trainer's progress is added as ``"trainer"``.
        interval: save every this many iterations (and always when the stage completes).
        stage: stage name for log messages (default: the file name without ``_checkpoint.pt``).

    Only rank 0 writes (``torch.distributed``); every rank can load.
    """

    def __init__(self, path: str | os.PathLike, save_dict: Mapping[str, Any], interval: int = 100,
                 stage: str | None = None) -> None:
        if int(interval) < 1:
            raise ValueError(f"checkpoint interval must be >= 1 iteration, got {interval}.")
        if TRAINER_KEY in save_dict:
            raise ValueError(f"save_dict must not use the key {TRAINER_KEY!r}; the trainer is added on attach.")
        self.path = Path(path)
        self.save_dict = dict(save_dict)
        self.interval = int(interval)
        self.stage = stage or self.path.name.replace("_checkpoint.pt", "")
        self.engine: Any = None

    def attach(self, engine: Any) -> None:
        """Save every ``interval`` iterations and on completion (attaching twice to one engine is a no-op)."""
        from ignite.engine import Events

        if self.engine is engine:
            return
        self.engine = engine
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def __call__(self, engine: Any) -> None:
        self.save(engine)

    def save(self, engine: Any) -> None:
        """Write the checkpoint atomically (temporary file, then rename); a no-op on ranks > 0."""
        if not is_rank0():
            return
        state = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        state[TRAINER_KEY] = {"iteration": int(engine.state.iteration), "epoch_length": int(engine.state.epoch_length),
                              "max_epochs": int(engine.state.max_epochs)}
        _atomic_save(state, self.path)
        logger.debug("saved %s checkpoint at iteration %d to %s", self.stage, engine.state.iteration, self.path)

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

        The engine keeps its configured ``max_epochs`` and ``epoch_length``; only the iteration (and the epoch
        derived from it) comes from the checkpoint. Returns 0 when there is no checkpoint.

        Raises:
            ValueError: the checkpoint does not match the configured objects (other network size, mode, ...).
        """
        state = self.read()
        if state is None:
            return 0
        for name in names if names is not None else self.save_dict:
            if name not in state:
                raise ValueError(f"{self.path}: no {name!r} in the {self.stage} checkpoint (it has {sorted(state)}); "
                                 "delete it to retrain this stage.")
            try:
                self.save_dict[name].load_state_dict(state[name])
            except (RuntimeError, ValueError, KeyError) as exc:
                raise ValueError(f"{self.path}: {name!r} does not match the configured one (network preset, mode or "
                                 f"optimizer changed?): {str(exc).splitlines()[0]}. Use the original settings, or "
                                 "delete the file to retrain this stage.") from exc
        iteration = int(state.get(TRAINER_KEY, {}).get("iteration", 0))
        if engine is not None:
            engine.state.iteration = iteration
            engine.state.epoch = iteration // int(engine.state.epoch_length)
        return iteration

    def load_weights(self) -> int:
        """Load only the networks and EMAs (``*_net``, ``*_ema``) of a finished or partial stage, if any."""
        names = [n for n in self.save_dict if n.endswith("_net") or n.endswith("_ema")]
        iteration = self.load(names=names)
        if iteration:
            logger.info("loaded the %s stage's weights (iteration %d) from %s", self.stage, iteration, self.path)
        return iteration


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
    total = int(trainer.state.max_epochs) * int(trainer.state.epoch_length)
    done = checkpoint.load(trainer)
    if done >= total:
        logger.info("%s stage is complete (iteration %d of %d, %s); skipping it. Delete that file to retrain it.",
                    stage, done, total, checkpoint.path)
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
    net = _unwrap(network)
    ema = DRDDNet(residual_ema.ema_model, noise_ema.ema_model, noise_conditioned=net.noise_conditioned,
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
        ValueError: none of the checkpoints exists.
    """
    if not is_rank0():
        return None
    network = model_config.build_network()
    roles = role_networks(network)
    trained: dict[str, Path] = {}
    for file in map(Path, checkpoints):
        if not file.is_file():
            continue
        state = torch.load(file, map_location="cpu", weights_only=True)
        for role, module in roles.items():
            if f"{role}_ema" not in state:
                continue
            ema = ModelEMA(module)
            ema.load_state_dict(state[f"{role}_ema"])
            if int(ema.num_updates) > 0:
                module.load_state_dict(ema.ema_model.state_dict())
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
    _atomic_save({k: v.detach().cpu() for k, v in network.state_dict().items()}, weights)
    model_config.save(model_dir / "model_config.json")
    logger.info("exported %s (%s) and model_config.json", weights,
                ", ".join(f"{role} from {path.name}" for role, path in trained.items()))
    return weights
