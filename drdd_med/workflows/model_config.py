"""ModelConfig: everything needed to rebuild a trained model and its pre-/post-processing.

A trained bundle holds two files side by side::

    <bundle>/models/model.pt            DRDDNet (or RegressionNet) state dict (EMA weights), tensors only
    <bundle>/models/model_config.json   ModelConfig.to_dict()

``method`` says which model it is: ``"drdd"`` (two-stage sampling; the default, and what a config file without the
key means) or ``"regression"`` (one :class:`~drdd_med.networks.RegressionNet` evaluation per volume, the baseline
a physicist compares DRDD with).

Training writes both (:func:`save_model`); inference (:class:`~drdd_med.workflows.predictor.SCTPredictor`,
``drdd-med translate``, the bundle's ``inference.json``) rebuilds the network, scheduler, volume inferer and
transforms from the config alone, so sampling always uses the settings the model was trained with (mode, 2.5D
slice count, noise level, residual schedule, intensity windows).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drdd_med import keys

__all__ = ["METHODS", "MODEL_CONFIG_NAME", "MODEL_WEIGHTS_NAME", "ModelConfig", "load_weights", "model_paths",
           "save_model"]

logger = logging.getLogger(__name__)

MODEL_CONFIG_NAME = "model_config.json"
MODEL_WEIGHTS_NAME = "model.pt"
_MODES = ("2d", "2.5d", "3d")
METHODS = ("drdd", "regression")
# Wrappers a checkpoint may put around the state dict (Ignite CheckpointSaver dicts, EMA / DDP modules).
_STATE_KEYS = ("ema", "network", "model", "state_dict", "net")


def model_paths(bundle_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(<bundle>/models/model_config.json, <bundle>/models/model.pt)``."""
    models = Path(bundle_dir) / "models"
    return models / MODEL_CONFIG_NAME, models / MODEL_WEIGHTS_NAME


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class ModelConfig:
    """How a DRDD or regression model was built and trained, and how its inputs and outputs are mapped.

    Attributes:
        mode: ``"2d"`` (axial slices), ``"2.5d"`` (``num_slices`` neighbouring source slices as channels) or
            ``"3d"`` (patches / sliding windows).
        num_slices: source slices per 2.5D input (odd; 1 for 2d / 3d).
        preset: network preset (``"tiny"``, ``"small"``, ``"paper"``).
        network_overrides: extra ``build_drdd_net`` options (e.g. ``{"channels": [32, 64]}``).
        source_channels: channels of one source slice / volume (1 for MR).
        target_channels: target channels (1 for CT).
        noise_level: the scheduler noise level the residual stage was trained at (METHOD.md §6.3).
        noise_conditioned: the noise net also receives the source.
        residual_schedule: ``"normalized"`` or ``"code"``.
        num_train_timesteps: T of both stages.
        residual_steps: default residual sampling steps.
        noise_steps: default noise sampling steps.
        roi_size: (X, Y, Z) sliding-window size for 3D models, voxels.
        source_normalize: source intensity map to [-1, 1] (``{"type": "percentile", "lower", "upper"}`` or
            ``{"type": "range", "a_min", "a_max"}``).
        target_normalize: target map, a ``"range"`` window in HU (inverted to write HU).
        source_modality: e.g. ``"MR"``.
        target_modality: e.g. ``"CT"``.
        model_version: version string; part of every DICOM UID written for this model.
        pixdim: resample inputs to this spacing (mm) before the network and back afterwards; None keeps the
            native grid (the default for 2D / 2.5D models).
        method: ``"drdd"`` or ``"regression"`` (a :class:`~drdd_med.networks.RegressionNet` with the preset's
            residual-net architecture, source in, target out; the noise and step settings do not apply to it).

    Example:
        >>> config = ModelConfig(mode="2.5d", num_slices=3, preset="tiny")
        >>> config.spatial_dims, config.network_source_channels
        (2, 3)
        >>> ModelConfig.from_dict(config.to_dict()) == config
        True
    """

    mode: str = "2d"
    num_slices: int = 1
    preset: str = "small"
    network_overrides: dict[str, Any] = field(default_factory=dict)
    source_channels: int = 1
    target_channels: int = 1
    noise_level: float = 1.0
    noise_conditioned: bool = False
    residual_schedule: str = "normalized"
    num_train_timesteps: int = 1000
    residual_steps: int = 2
    noise_steps: int = 2
    roi_size: list[int] = field(default_factory=lambda: [64, 64, 64])
    source_normalize: dict[str, Any] = field(
        default_factory=lambda: {"type": "percentile", "lower": 0.5, "upper": 99.5})
    target_normalize: dict[str, Any] = field(
        default_factory=lambda: {"type": "range", "a_min": keys.HU_MIN, "a_max": keys.HU_MAX})
    source_modality: str = "MR"
    target_modality: str = "CT"
    model_version: str = "drdd-0.1.0"
    pixdim: list[float] | None = None
    method: str = "drdd"

    def __post_init__(self) -> None:
        self.mode = str(self.mode).lower()
        self.method = str(self.method).lower()
        self.roi_size = [int(r) for r in self.roi_size]
        self.network_overrides = dict(self.network_overrides)
        self.pixdim = None if self.pixdim is None else [float(p) for p in self.pixdim]
        problems = []
        if self.method not in METHODS:
            problems.append(f"method={self.method!r} must be one of {list(METHODS)}")
        if self.mode not in _MODES:
            problems.append(f"mode={self.mode!r} must be one of {list(_MODES)}")
        if self.num_slices < 1 or self.num_slices % 2 == 0:
            problems.append(f"num_slices={self.num_slices} must be odd and >= 1")
        elif self.mode != "2.5d" and self.num_slices != 1:
            problems.append(f"num_slices={self.num_slices} needs mode '2.5d' (mode {self.mode!r} uses 1)")
        if min(self.residual_steps, self.noise_steps) < 0 or self.residual_steps + self.noise_steps < 1:
            problems.append(f"steps {self.residual_steps},{self.noise_steps}: need non-negative counts and at least "
                            "one step")
        if len(self.roi_size) != 3 or min(self.roi_size) < 1:
            problems.append(f"roi_size={self.roi_size} must be three positive sizes (X, Y, Z)")
        if self.target_normalize.get("type") != "range":
            problems.append("target_normalize must be a 'range' window (a_min, a_max in HU) so outputs map back to HU")
        if not self.model_version:
            problems.append("model_version must be a non-empty string")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems) + ".")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict; unknown keys raise ``ValueError`` listing them (a typo must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown model config key(s) {unknown}; valid keys: {sorted(names)}.")
        defaults = cls()
        wrong = [f"{k}={v!r} (expected {_kind(getattr(defaults, k))})" for k, v in data.items()
                 if not _same_kind(getattr(defaults, k), v)]
        if wrong:
            raise ValueError(f"model config value(s) of the wrong type: {', '.join(wrong)}.")
        return cls(**data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON atomically.

        Args:
            path: a ``.json`` file, or a bundle folder (-> ``<bundle>/models/model_config.json``).

        Returns:
            The written path.
        """
        path = Path(path)
        if path.suffix.lower() != ".json":
            path = model_paths(path)[0]
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        _atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelConfig:
        """Read a config from a bundle folder (``models/model_config.json``) or a JSON file.

        Raises:
            FileNotFoundError: no config there (the bundle has not been trained yet).
            ValueError: the file is not valid JSON or has unknown keys.
        """
        path = Path(path)
        file = model_paths(path)[0] if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(
                f"{file}: no model config. Train the bundle first (python -m monai.bundle run training "
                f"--config_file {path}/train.json) or pass a bundle folder that holds models/{MODEL_CONFIG_NAME} "
                f"and models/{MODEL_WEIGHTS_NAME}."
            )
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}: not valid JSON (line {exc.lineno}: {exc.msg}); retrain or restore it.") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{file}: expected a JSON object of model settings.")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{file}: {exc}") from exc

    # ------------------------------------------------------------------ derived settings
    @property
    def spatial_dims(self) -> int:
        """3 for ``"3d"`` models, else 2."""
        return 3 if self.mode == "3d" else 2

    @property
    def network_source_channels(self) -> int:
        """Source channels the residual net sees: ``source_channels * num_slices`` for 2.5D."""
        return self.source_channels * (self.num_slices if self.mode == "2.5d" else 1)

    @property
    def hu_window(self) -> tuple[float, float]:
        """(a_min, a_max) of the target window in HU."""
        norm = self.target_normalize
        return float(norm.get("a_min", keys.HU_MIN)), float(norm.get("a_max", keys.HU_MAX))

    # ------------------------------------------------------------------ builders
    def build_network(self) -> nn.Module:
        """A freshly initialised :class:`~drdd_med.networks.DRDDNet` (``method="regression"``: a
        :class:`~drdd_med.networks.RegressionNet`) of this architecture."""
        from drdd_med.networks.factory import build_drdd_net, build_regression_net

        if self.method == "regression":
            return build_regression_net(self.spatial_dims, self.network_source_channels, self.target_channels,
                                        self.preset, **self.network_overrides)
        return build_drdd_net(self.spatial_dims, self.network_source_channels, self.target_channels, self.preset,
                              self.noise_conditioned, noise_level=self.noise_level, **self.network_overrides)

    def build_scheduler(self) -> Any:
        """The :class:`~drdd_med.diffusion.DRDDScheduler` the model was trained with."""
        from drdd_med.diffusion.scheduler import DRDDScheduler

        return DRDDScheduler(num_train_timesteps=self.num_train_timesteps, noise_level=self.noise_level,
                             residual_schedule=self.residual_schedule)

    def build_inferer(self, **overrides: Any) -> Any:
        """A :class:`~drdd_med.inferers.volume.VolumeDRDDInferer` for whole volumes (``method="regression"``: a
        :class:`~drdd_med.inferers.volume.VolumeRegressionInferer`).

        Args:
            overrides: ``VolumeDRDDInferer`` options (``residual_steps``, ``noise_steps``, ``seed``,
                ``num_samples``, ``eta``, ``progress``, ``slice_batch``, ``sw_batch_size``, ``overlap``, ...);
                None values keep the config's defaults.

        Raises:
            ValueError: for a regression model, ``num_samples > 1`` or a sampling option (steps, ``eta``).
        """
        from drdd_med.inferers.volume import VolumeDRDDInferer, VolumeRegressionInferer

        options: dict[str, Any] = {"mode": self.mode, "num_slices": self.num_slices, "roi_size": tuple(self.roi_size)}
        given = {k: v for k, v in overrides.items() if v is not None}
        if self.method == "regression":
            return VolumeRegressionInferer(**(options | given))
        steps = {"residual_steps": self.residual_steps, "noise_steps": self.noise_steps}
        return VolumeDRDDInferer(self.build_scheduler(), **(steps | options | given))

    def preprocessing(self, source_key: str = keys.IMAGE, divisor: int = 1, dicom_rules: Any = None) -> Any:
        """Inference preprocessing: load (NIfTI or DICOM folder), RAS, [-1, 1], divisible padding.

        Args:
            source_key: item key of the source path.
            divisor: the network's spatial divisibility (``network.divisor``).
            dicom_rules: series selection rules for DICOM folders.

        Returns:
            A MONAI ``Compose``; pass it to :meth:`postprocessing`.
        """
        from drdd_med.transforms.pipelines import inference_transforms

        return inference_transforms(self.mode, source_norm=self.source_normalize, divisor=divisor,
                                    source_key=source_key, pixdim=self.pixdim, dicom_rules=dicom_rules)

    def postprocessing(self, preprocessing: Any, pred_key: str = keys.PRED, source_key: str = keys.IMAGE,
                       output_dir: str | None = None) -> Any:
        """Map ``pred_key`` from [-1, 1] on the preprocessed grid to int16 HU on the source's native grid."""
        from drdd_med.transforms.pipelines import inference_postprocessing

        return inference_postprocessing(preprocessing, pred_key=pred_key, source_key=source_key,
                                        target_norm=self.target_normalize, output_dir=output_dir)


def _kind(default: Any) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(default), "a list or null")


def _same_kind(default: Any, value: Any) -> bool:
    """Whether a JSON value fits a field with this default (ints are numbers; ``pixdim`` may be null or a list)."""
    if default is None:
        return value is None or isinstance(value, list)
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _unwrap_state(state: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        nested = [k for k in _STATE_KEYS if isinstance(state.get(k), dict)]
        if not nested:
            raise ValueError(f"{path}: not a DRDDNet state dict (keys {sorted(state)[:8]}); expected the tensors "
                             f"saved by training or a checkpoint holding one of {list(_STATE_KEYS)}.")
        state = state[nested[0]]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}.")
    # EMA (torch.optim.swa_utils.AveragedModel) and DDP wrappers prefix every key with "module."
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items() if k != "n_averaged"}
    return state


def load_weights(network: nn.Module, path: str | os.PathLike, map_location: Any = "cpu") -> nn.Module:
    """Load trained weights into ``network`` (``torch.load(weights_only=True)``; strict key matching).

    Args:
        network: the module built by :meth:`ModelConfig.build_network`.
        path: ``model.pt`` or a bundle folder (-> ``models/model.pt``).
        map_location: device the tensors are loaded to.

    Raises:
        FileNotFoundError: no weights (the bundle has not been trained).
        ValueError: the file does not match the network (other preset, mode or channel count).
    """
    path = Path(path)
    file = model_paths(path)[1] if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no trained weights. Train the bundle first, or pass the bundle folder "
                                f"that holds models/{MODEL_WEIGHTS_NAME}.")
    try:
        loaded = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, empty file, pickled objects other than tensors, ...
        first = re.sub(r"\x1b\[[0-9;]*m", "", (str(exc).strip().splitlines() or [""])[0])  # no terminal colours
        raise ValueError(f"{file}: not a readable weights file ({type(exc).__name__}: {first}); it is truncated, "
                         "corrupt or not saved by drdd_med training; retrain or restore it.") from exc
    state = _unwrap_state(loaded, file)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{file}: the weights do not fit the network described by {MODEL_CONFIG_NAME} "
                         f"(preset, mode, num_slices or channels differ): {str(exc).splitlines()[0]}") from exc
    return network


def save_model(network: nn.Module, config: ModelConfig, bundle_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``models/model.pt`` (state dict) and ``models/model_config.json`` atomically.

    Returns:
        ``(config_path, weights_path)``.
    """
    config_path, weights_path = model_paths(bundle_dir)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    _atomic_write(weights_path, lambda tmp: torch.save(state, tmp))
    config.save(config_path)
    logger.info("saved model to %s", weights_path.parent)
    return config_path, weights_path
