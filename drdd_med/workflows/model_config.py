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

A model trained on a spec whose items name their source ``domain`` (one model for T1w MR, T2w MR and CBCT) lists
those ``domains`` with each one's source normalisation; inference normalises an input with its domain's entry
(:meth:`ModelConfig.resolve_domain` says which domain an input is). A model trained on a spec without domains has
an empty list and translates its one ``source_modality`` with ``source_normalize``, as config files written before
the key existed do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drdd_med import keys
from drdd_med.data.domains import DOMAIN_MODALITY, DOMAINS, SOURCE_NORMALIZE
from drdd_med.diffusion.scheduler import TRAIN_TIMESTEPS, sampling_problem
from drdd_med.networks.drdd_net import RESIDUAL_PREDICTIONS
from drdd_med.io.atomic import atomic_file, write_atomic

__all__ = ["METHODS", "MODEL_CONFIG_NAME", "MODEL_WEIGHTS_NAME", "ModelConfig", "load_weights", "model_paths",
           "save_model"]

logger = logging.getLogger(__name__)

MODEL_CONFIG_NAME = "model_config.json"
MODEL_WEIGHTS_NAME = "model.pt"
METHODS = ("drdd", "regression")
# Wrappers a checkpoint may put around the state dict (Ignite CheckpointSaver dicts, EMA / DDP modules).
_STATE_KEYS = ("ema", "network", "model", "state_dict", "net")


def model_paths(bundle_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(<bundle>/models/model_config.json, <bundle>/models/model.pt)``."""
    models = Path(bundle_dir) / "models"
    return models / MODEL_CONFIG_NAME, models / MODEL_WEIGHTS_NAME


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
        noise_conditioned: the noise net also receives the source (the bundle's default: it measured 12 HU better
            than the MR-blind prior on the phantom with the same residual net; the MR-blind one can use unpaired CT).
        residual_schedule: ``"normalized"`` or ``"code"``.
        noise_time_input: the noise net's time input, ``"level"`` (``1000 * β̄_t / noise_level``, the reference
            code's; the default) or ``"absolute"`` (``1000 * σ``, METHOD.md §6.3): see
            :class:`~drdd_med.diffusion.DRDDScheduler`.
        noise_sigma_max: top of the noise stage's training range (``"absolute"`` only; None: ``noise_level``). A
            denoiser trained with it serves any ``noise_level`` up to it, so ``train_residual`` can reuse it.
        noise_prediction: the noise net's output, ``"epsilon"`` (ε, the paper) or ``"sample"`` (the clean image):
            see :class:`~drdd_med.diffusion.DRDDScheduler`.
        residual_prediction: the residual net's output, ``"residual"`` (``anchor(source) - x0``, the paper) or
            ``"sample"`` (x0, turned into the residual by the model): see :class:`~drdd_med.networks.DRDDNet`.
        num_train_timesteps: T of both stages.
        residual_steps: default residual sampling steps, 1 to T.
        residual_train_timesteps: ``"uniform"`` (the paper: the residual net trained at every t) or ``"sampler"``
            (trained only at the t of its ``residual_steps`` sampling steps; it then samples with that count only,
            see :func:`~drdd_med.diffusion.scheduler.training_timesteps`).
        noise_steps: default noise sampling steps, 0 to T (0: the no-denoiser ablation's hand-over state).
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
        domains: the source domains the model was trained on (``drdd_med.data.domains.DOMAINS`` order), empty for a
            model trained on a spec without ``domain`` keys.
        domain_normalize: domain -> source normalisation (filled from ``SOURCE_NORMALIZE`` for listed domains).
        domain_embedding: the residual net also receives the domain as a class embedding (MONAI
            ``DiffusionModelUNet`` ``num_class_embeds``); False (the default) leaves it to infer the domain from the
            image. DRDD models only.

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
    noise_time_input: str = "level"
    noise_sigma_max: float | None = None
    noise_prediction: str = "epsilon"
    residual_prediction: str = "residual"
    num_train_timesteps: int = 1000
    residual_steps: int = 2
    residual_train_timesteps: str = "uniform"
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
    domains: list[str] = field(default_factory=list)
    domain_normalize: dict[str, dict[str, Any]] = field(default_factory=dict)
    domain_embedding: bool = False

    def __post_init__(self) -> None:
        # checked before anything else, so that a bundle override such as ``--noise_conditioned true`` (the string
        # 'true' is truthy, and so is 'false') stops the run at once instead of training the wrong network
        fields = dataclasses.fields(self)
        defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for f in fields}
        hints = {f.name: str(f.type) for f in fields}
        wrong = [f"{k}={getattr(self, k)!r} (expected {_kind(v, hints[k])})" for k, v in defaults.items()
                 if not _same_kind(v, getattr(self, k), hints[k])]
        if wrong:
            raise ValueError(f"model config value(s) of the wrong type: {', '.join(wrong)}; on the command line "
                             "booleans are True / False (e.g. --noise_conditioned True).")
        self.mode = str(self.mode).lower()
        self.method = str(self.method).lower()
        self.roi_size = [int(r) for r in self.roi_size]
        self.network_overrides = dict(self.network_overrides)
        self.domains = list(self.domains)
        self.pixdim = None if self.pixdim is None else [float(p) for p in self.pixdim]
        problems = []
        if self.method not in METHODS:
            problems.append(f"method={self.method!r} must be one of {list(METHODS)}")
        if self.mode not in keys.MODES:
            problems.append(f"mode={self.mode!r} must be one of {list(keys.MODES)}")
        if self.num_slices < 1 or self.num_slices % 2 == 0:
            problems.append(f"num_slices={self.num_slices} must be odd and >= 1")
        elif self.mode != "2.5d" and self.num_slices != 1:
            problems.append(f"num_slices={self.num_slices} needs mode '2.5d' (mode {self.mode!r} uses 1)")
        scheduler_problem = self._scheduler_problem()
        if scheduler_problem:
            problems.append(scheduler_problem)
        steps_problem = sampling_problem(self.residual_steps, self.noise_steps, self.num_train_timesteps)
        if steps_problem:
            problems.append(steps_problem)
        if self.residual_prediction not in RESIDUAL_PREDICTIONS:
            problems.append(f"residual_prediction={self.residual_prediction!r} must be one of "
                            f"{list(RESIDUAL_PREDICTIONS)}")
        if self.residual_train_timesteps not in TRAIN_TIMESTEPS:
            problems.append(f"residual_train_timesteps={self.residual_train_timesteps!r} must be one of "
                            f"{list(TRAIN_TIMESTEPS)}")
        if len(self.roi_size) != 3 or min(self.roi_size) < 1:
            problems.append(f"roi_size={self.roi_size} must be three positive sizes (X, Y, Z)")
        if self.target_normalize.get("type") != "range":
            problems.append("target_normalize must be a 'range' window (a_min, a_max in HU) so outputs map back to HU")
        if not self.model_version:
            problems.append("model_version must be a non-empty string")
        problems += self._domain_problems()
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems) + ".")

    def _scheduler_problem(self) -> str | None:
        """The scheduler's refusal of ``noise_level`` / ``noise_time_input`` / ``noise_sigma_max`` /
        ``noise_prediction``, or None."""
        try:
            self.build_scheduler()
        except ValueError as exc:
            return str(exc).rstrip(".")
        return None

    def _domain_problems(self) -> list[str]:
        """Check ``domains`` / ``domain_normalize`` / ``domain_embedding``; put the domains in ``DOMAINS`` order."""
        unknown = [d for d in self.domains if d not in DOMAINS]
        if unknown:
            return [f"domains {unknown} are unknown (known: {', '.join(DOMAINS)})"]
        if len(set(self.domains)) != len(self.domains):
            return [f"domains {self.domains} lists a domain twice"]
        self.domains = [d for d in DOMAINS if d in self.domains]
        problems = []
        extra = sorted(set(self.domain_normalize) - set(self.domains))
        if extra:
            problems.append(f"domain_normalize has entries {extra} for domains the model does not list "
                            f"(domains {self.domains})")
        given = {d: self.domain_normalize.get(d, SOURCE_NORMALIZE[d]) for d in self.domains}
        self.domain_normalize = {d: dict(norm) if isinstance(norm, dict) else {} for d, norm in given.items()}
        bad = [d for d, norm in self.domain_normalize.items() if norm.get("type") not in ("percentile", "range")]
        if bad:
            problems.append(f"domain_normalize of {bad} must have type 'percentile' or 'range'")
        if self.domain_embedding and not self.domains:
            problems.append("domain_embedding needs the domains it embeds (a spec whose items name their domain)")
        if self.domain_embedding and self.method != "drdd":
            problems.append(f"domain_embedding applies to DRDD models only, not method {self.method!r}")
        return problems

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
        write_atomic(path, text)
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

    # ------------------------------------------------------------------ source domains
    def resolve_domain(self, domain: str | None, where: str | os.PathLike) -> str | None:
        """The domain an input is translated as, or None for a model without domains; refuses what the model lacks.

        Args:
            domain: the domain named for the input (None: not named).
            where: the input, named in every message.

        Returns:
            ``domain`` when the model lists it; the model's only domain when none is named; None for a model
            without domains.

        Raises:
            ValueError: an unknown domain, a domain the model was not trained on, a domain given to a model
                without domains, or no domain for a model of several.
        """
        trained = ", ".join(self.domains)
        if domain is not None and domain not in DOMAINS:
            raise ValueError(f"{where}: unknown source domain {domain!r}; known domains: {', '.join(DOMAINS)}.")
        if not self.domains:
            if domain is None:
                return None
            raise ValueError(f"{where}: domain {domain!r} given, but this model lists no source domains (it was "
                             f"trained on a spec without 'domain' keys and translates {self.source_modality} "
                             "only); translate without a domain.")
        if domain is None:
            if len(self.domains) == 1:
                return self.domains[0]
            raise ValueError(f"{where}: no source domain named (a NIfTI file does not record one) and this model "
                             f"translates several ({trained}); pass it: drdd-med translate --domain "
                             f"{'|'.join(self.domains)}, SCTPredictor(domain=...).")
        if domain not in self.domains:
            raise ValueError(f"{where}: source domain {domain!r} is not one this model was trained on ({trained}); "
                             "use a model trained on it.")
        return domain

    def source_norm_for(self, domain: str | None) -> dict[str, Any]:
        """Source normalisation of inputs of ``domain`` (None: the model's ``source_normalize``)."""
        return self.source_normalize if domain is None else self.domain_normalize[domain]

    def modality_for(self, domain: str | None) -> str:
        """Modality of inputs of ``domain`` (``"MR"``, ``"CBCT"``; None: the model's ``source_modality``)."""
        return self.source_modality if domain is None else DOMAIN_MODALITY[domain]

    def domain_label(self, domain: str | None) -> torch.Tensor | None:
        """The (1,) class label of ``domain`` for a model with ``domain_embedding``, else None."""
        if not self.domain_embedding:
            return None
        return torch.tensor([self.domains.index(domain)], dtype=torch.long)

    # ------------------------------------------------------------------ builders
    def build_network(self) -> nn.Module:
        """A freshly initialised :class:`~drdd_med.networks.DRDDNet` (``method="regression"``: a
        :class:`~drdd_med.networks.RegressionNet`) of this architecture."""
        from drdd_med.networks.factory import build_drdd_net, build_regression_net

        if self.method == "regression":
            return build_regression_net(self.spatial_dims, self.network_source_channels, self.target_channels,
                                        self.preset, **self.network_overrides)
        overrides = dict(self.network_overrides)
        if self.domain_embedding:
            overrides["residual_num_class_embeds"] = len(self.domains)
        return build_drdd_net(self.spatial_dims, self.network_source_channels, self.target_channels, self.preset,
                              self.noise_conditioned, noise_level=self.noise_level,
                              residual_prediction=self.residual_prediction, **overrides)

    def build_scheduler(self) -> Any:
        """The :class:`~drdd_med.diffusion.DRDDScheduler` the model was trained with."""
        from drdd_med.diffusion.scheduler import DRDDScheduler

        return DRDDScheduler(num_train_timesteps=self.num_train_timesteps, noise_level=self.noise_level,
                             residual_schedule=self.residual_schedule, noise_time_input=self.noise_time_input,
                             noise_sigma_max=self.noise_sigma_max, noise_prediction=self.noise_prediction)

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
        wanted = given.get("residual_steps", self.residual_steps)
        if self.residual_train_timesteps == "sampler" and int(wanted) != self.residual_steps:
            raise ValueError(f"residual_steps={wanted}: this model's residual network was trained only at the "
                             f"timesteps of {self.residual_steps} residual step(s) (residual_train_timesteps="
                             f"'sampler'), so it samples with {self.residual_steps}; leave residual_steps unset "
                             f"(translate: --steps {self.residual_steps},N sets the noise steps only).")
        return VolumeDRDDInferer(self.build_scheduler(), **(steps | options | given))

    def preprocessing(self, source_key: str = keys.IMAGE, divisor: int = 1, dicom_rules: Any = None,
                      domain: str | None = None) -> Any:
        """Inference preprocessing: load (NIfTI or DICOM folder), RAS, [-1, 1], divisible padding.

        Args:
            source_key: item key of the source path.
            divisor: the network's spatial divisibility (``network.divisor``).
            dicom_rules: series selection rules for DICOM folders.
            domain: the input's source domain (one of :attr:`domains`), which picks the normalisation; None for a
                model without domains.

        Returns:
            A MONAI ``Compose``; pass it to :meth:`postprocessing`.
        """
        from drdd_med.transforms.pipelines import inference_transforms

        return inference_transforms(self.mode, source_norm=self.source_norm_for(domain), divisor=divisor,
                                    source_key=source_key, pixdim=self.pixdim, dicom_rules=dicom_rules)

    def postprocessing(self, preprocessing: Any, pred_key: str = keys.PRED, source_key: str = keys.IMAGE,
                       output_dir: str | None = None) -> Any:
        """Map ``pred_key`` from [-1, 1] on the preprocessed grid to int16 HU on the source's native grid."""
        from drdd_med.transforms.pipelines import inference_postprocessing

        return inference_postprocessing(preprocessing, pred_key=pred_key, source_key=source_key,
                                        target_norm=self.target_normalize, output_dir=output_dir)


def _kind(default: Any, hint: str = "") -> str:
    if default is None and not hint.startswith("list"):
        return "a number or null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(default), "a list or null")


def _same_kind(default: Any, value: Any, hint: str = "") -> bool:
    """Whether a JSON value fits a field with this default and annotation ``hint`` (ints are numbers; a field
    declared ``list[...] | None`` such as ``pixdim`` may be null or a list, ``float | None`` null or a number)."""
    if default is None and not hint.startswith("list"):
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    if default is None:
        return value is None or isinstance(value, (list, tuple))
    if isinstance(default, list):
        return isinstance(value, (list, tuple))
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
    with atomic_file(weights_path) as tmp:
        torch.save(state, tmp)
    config.save(config_path)
    logger.info("saved model to %s", weights_path.parent)
    return config_path, weights_path
