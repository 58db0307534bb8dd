"""SCTPredictor: a trained bundle -> synthetic CT in HU on the source's native grid, as NIfTI or a DICOM series.

It is the one inference engine: the translate CLI, the bundle's ``inference.json`` and ``evaluate.json``, the
training report, the PACS job, the Slicer module (through the CLI) and the benchmarks all call it::

    predictor = SCTPredictor.from_bundle("bundles/drdd", device="auto")
    result = predictor.predict("case01/mr.nii.gz")        # or a DICOM series folder
    predictor.save_nifti(result, "out/", "case01")          # out/case01_sct.nii.gz (int16 HU)
    predictor.save_dicom(result, "out/case01_sct_dicom")    # CT series with deterministic UIDs
    predictor.translate("case01/mr.nii.gz", "out/")         # predict + save_nifti, named after the input

The volume is sampled by :class:`~drdd_med.inferers.volume.VolumeDRDDInferer` (whole-volume state, slice batches
or sliding windows: memory is bounded by ``slice_batch`` / ``roi_size``, not by the volume), or, for a model of
method ``"regression"``, predicted in one network evaluation by its subclass ``VolumeRegressionInferer``; then mapped
back to HU and to the source's grid and orientation by the config's ``Invertd`` post-processing.

A model trained on several source domains (``ModelConfig.domains``: T1w, T2w, CBCT) translates each input as the
domain it is given (``domain=``), or, for a DICOM series, as the domain its header shows
(:func:`drdd_med.io.domain.detect_domain`); an input of a domain the model lacks is refused, naming the file::

    predictor.predict("case02/t2w.nii.gz", domain="t2w")
    predictor.predict("case03/cbct_dicom/")                 # header: a cone-beam CT -> "cbct"
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from drdd_med import keys, runtime
from drdd_med.data.domains import check_domain
from drdd_med.workflows.model_config import ModelConfig, load_weights

__all__ = ["SCTPredictor", "SCTResult", "STD_SUFFIX", "SCT_SUFFIX", "input_stem"]

logger = logging.getLogger(__name__)

#: Output file name suffixes: ``<stem>_sct.nii.gz`` (int16 HU) and ``<stem>_sct_std.nii.gz`` (float32 HU).
SCT_SUFFIX = "_sct.nii.gz"
STD_SUFFIX = "_sct_std.nii.gz"
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


def input_stem(input_path: str | os.PathLike) -> str:
    """File name without its image suffix (``case.nii.gz`` -> ``case``); a folder's name for DICOM folders."""
    name = Path(input_path).name
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class SCTResult:
    """One translated volume.

    Attributes:
        hu: (1, X, Y, Z) float32 MetaTensor, integer HU values in [a_min, a_max], on the source's native grid, with
            the source's RAS affine.
        std_hu: (1, X, Y, Z) float32 per-voxel standard deviation over samples in HU (``num_samples > 1``), else None.
        source_datasets: the source series' pydicom headers sorted by position, as the reader parsed them (DICOM
            input), else None.
        affine: (4, 4) RAS affine in mm of ``hu``.
        source: the input path.
        uid_seed: a stable identifier of the input (series UID or file content hash) for deterministic DICOM UIDs.
        domain: the source domain it was translated as (None for a model without domains).
    """

    hu: Any
    std_hu: Any | None
    source_datasets: list[Any] | None
    affine: np.ndarray
    source: Path
    uid_seed: str
    domain: str | None = None


def _file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes: a stable identity for a non-DICOM input (survives renames and moves)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SCTPredictor:
    """Translate source volumes (NIfTI files or DICOM series folders) to synthetic CT with a DRDD or regression model.

    Args:
        network: the trained :class:`~drdd_med.networks.DRDDNet` (or any module with its call convention), or the
            :class:`~drdd_med.networks.RegressionNet` of a ``method="regression"`` config.
        config: the model's :class:`~drdd_med.workflows.model_config.ModelConfig`.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        residual_steps: residual steps (None: the config's).
        noise_steps: noise steps (None: the config's).
        num_samples: k > 1 averages k samples and returns the per-voxel std map.
        seed: seed of the whole-volume noise field (same input and seed -> same sCT).
        progress: ``progress(done, total)`` after every whole-volume network evaluation.
        dicom_rules: series selection rules for DICOM folders (see ``drdd_med.io.dicom_series.select_series``).
        precision: ``"auto"`` (bf16 autocast where the device computes bf16 natively), ``"fp32"`` or ``"bf16"``
            (:func:`drdd_med.runtime.resolve_precision`).
        threads: CPU compute threads (None: one per CPU this process may use).
        domain: the source domain of every input (one of ``config.domains``); None reads it from the header of a
            DICOM series, or takes the model's only domain (a model of several refuses a NIfTI input without one).
        inferer_options: further ``VolumeDRDDInferer`` options (``slice_batch``, ``sw_batch_size``, ``overlap``,
            ``eta``).
    """

    def __init__(
        self,
        network: nn.Module,
        config: ModelConfig,
        device: str | torch.device = "auto",
        residual_steps: int | None = None,
        noise_steps: int | None = None,
        num_samples: int = 1,
        seed: int | None = 0,
        progress: Callable[[int, int], None] | None = None,
        dicom_rules: Mapping[str, Any] | None = None,
        precision: str = "auto",
        threads: int | None = None,
        domain: str | None = None,
        **inferer_options: Any,
    ) -> None:
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        if domain is not None:
            check_domain(domain, "SCTPredictor(domain=...)")
        self.config = config
        self.domain = domain
        self.dicom_rules = dicom_rules
        self.device = runtime.resolve_device(device)
        self.precision = runtime.resolve_precision(precision, self.device)
        if self.device.type == "cpu":
            runtime.configure_threads(threads)
        self.network = network.to(self.device).eval()
        self.num_samples = int(num_samples)
        self.seed = seed
        self.inferer = config.build_inferer(residual_steps=residual_steps, noise_steps=noise_steps,
                                            num_samples=self.num_samples, seed=seed, progress=progress,
                                            precision=self.precision, **inferer_options)
        logger.info("sampling on %s", runtime.describe(self.device, self.precision))
        self._processing: dict[str | None, tuple[Any, Any]] = {}  # per domain: (preprocessing, postprocessing)
        self.processing(self._default_domain)  # bad selection rules fail here, not at the first input

    @classmethod
    def from_bundle(cls, bundle_dir: str | os.PathLike, device: str | torch.device = "auto",
                    **kwargs: Any) -> SCTPredictor:
        """Load ``models/model_config.json`` and ``models/model.pt`` of a trained bundle.

        Args:
            bundle_dir: the bundle folder (e.g. ``bundles/drdd``).
            device: as in the constructor.
            kwargs: other constructor arguments (``residual_steps``, ``noise_steps``, ``num_samples``, ``seed``,
                ``progress``, ...).

        Raises:
            FileNotFoundError: the bundle has no trained model.
        """
        config = ModelConfig.load(bundle_dir)
        network = load_weights(config.build_network(), bundle_dir)
        return cls(network, config, device=device, **kwargs)

    # ------------------------------------------------------------------ settings
    @property
    def steps(self) -> tuple[int, int]:
        """(residual_steps, noise_steps) used for sampling."""
        return self.inferer.residual_steps, self.inferer.noise_steps

    @property
    def output_version(self) -> str:
        """Version string written into DICOM UIDs and SoftwareVersions.

        The config's ``model_version`` for the default sampling settings; other steps, sample counts or seeds give a
        different sCT, so they are appended and yield a new series instead of overwriting the default one. A
        regression model (deterministic, no sampling settings) appends its method, so that it never shares UIDs with
        a DRDD model of the same version.
        """
        config = self.config
        if config.method != "drdd":
            return f"{config.model_version}+{config.method}"
        if self.steps == (config.residual_steps, config.noise_steps) and self.num_samples == 1 and self.seed == 0:
            return config.model_version
        return f"{config.model_version}+r{self.steps[0]}n{self.steps[1]}k{self.num_samples}s{self.seed}"

    def set_progress(self, progress: Callable[[int, int], None] | None) -> None:
        """Replace the per-network-evaluation progress callback."""
        self.inferer.progress = progress

    # ------------------------------------------------------------------ prediction
    def _check_input(self, path: Path) -> None:
        """Refuse a missing path or one that is neither NIfTI nor a folder (all input checks: ``io.input_checks``)."""
        from drdd_med.io.input_checks import check_input_path

        check_input_path(path)

    @property
    def preprocessing(self) -> Any:
        """Inference preprocessing of the predictor's domain (else the model's only one; bundle property)."""
        return self.processing(self._default_domain)[0]

    @property
    def postprocessing(self) -> Any:
        """The post-processing paired with :attr:`preprocessing`."""
        return self.processing(self._default_domain)[1]

    @property
    def _default_domain(self) -> str | None:
        domains = self.config.domains
        if self.domain in domains:
            return self.domain
        return domains[0] if len(domains) == 1 else None

    def processing(self, domain: str | None = None, series_uid: str | None = None) -> tuple[Any, Any]:
        """(preprocessing, postprocessing) ``Compose`` pair for inputs of ``domain`` (the domain picks the source
        normalisation); ``series_uid`` restricts a DICOM folder to that series."""
        if series_uid is None and domain in self._processing:
            return self._processing[domain]
        rules = self.dicom_rules if series_uid is None else {"SeriesInstanceUID": f"^{re.escape(series_uid)}$"}
        pre = self.config.preprocessing(divisor=int(getattr(self.network, "divisor", 1)), dicom_rules=rules,
                                        domain=domain)
        pair = (pre, self.config.postprocessing(pre))
        if series_uid is None:
            self._processing[domain] = pair
        return pair

    def input_domain(self, path: str | os.PathLike, domain: str | None = None,
                     series_uid: str | None = None) -> str | None:
        """The source domain ``path`` is translated as (None for a model without domains).

        ``domain`` (else the predictor's) when given; else, for a DICOM folder of a model with domains, the domain
        its series header shows (:func:`~drdd_med.io.domain.domain_of_header`); else the model's only domain.

        Raises:
            ValueError: the domain is unknown, the model lacks it, the header does not settle it
                (``DomainError``), or a NIfTI input to a model of several domains names none; the message starts
                with the path.
        """
        path = Path(path)
        domain = domain or self.domain
        if domain is None and self.config.domains and path.is_dir():
            from drdd_med.io.dicom_series import find_series, select_series
            from drdd_med.io.domain import domain_of_header

            series = find_series(path)
            header = series[select_series(series, self.dicom_rules, series_uid, folder=path)][0]
            domain = domain_of_header(header, header.filename)
            return self.config.resolve_domain(domain, f"{path}: the header of {Path(header.filename).name} shows "
                                                      f"{domain}")
        return self.config.resolve_domain(domain, path)

    def _sample(self, source: torch.Tensor, domain: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(1, Cs, X, Y, Z) source in [-1, 1] -> (mean, std or None), (1, Ct, X, Y, Z) in [-1, 1] units."""
        label = self.config.domain_label(domain)
        extra = {} if label is None else {"domain": label.to(self.device)}
        with torch.no_grad():
            out = self.inferer(source.to(self.device), self.network, **extra)
        mean, std = out if isinstance(out, tuple) else (out, None)
        return mean.float().cpu(), None if std is None else std.float().cpu()

    def predict(self, path: str | os.PathLike, series_uid: str | None = None, domain: str | None = None) -> SCTResult:
        """Translate one volume.

        Args:
            path: NIfTI file or DICOM series folder.
            series_uid: for a folder with several series, the SeriesInstanceUID to translate.
            domain: its source domain (None: the predictor's, else :meth:`input_domain` decides).

        Returns:
            :class:`SCTResult` with the sCT in HU on the source's native grid.

        Raises:
            ValueError: the input is missing, unreadable or refused by ``drdd_med.io.input_checks`` (docs/inputs.md),
                or of a source domain the model cannot translate; the message starts with the path.
        """
        from monai.data import MetaTensor
        from monai.transforms import Invertd

        from drdd_med.io.dicom_series import SOURCE_SERIES_UID_KEY, load_series_datasets
        from drdd_med.io.input_checks import load_source

        path = Path(path)
        self._check_input(path)
        domain = self.input_domain(path, domain, series_uid)
        preprocessing, postprocessing = self.processing(domain, series_uid)
        data = load_source(path, preprocessing, self.config.modality_for(domain), self.config.source_channels)
        source = data[keys.IMAGE]
        mean, std = self._sample(source.as_tensor()[None].float(), domain)
        data[keys.PRED] = MetaTensor(mean[0], meta=dict(source.meta))
        if std is not None:
            a_min, a_max = self.config.hu_window
            std_hu = std[0] * ((a_max - a_min) / (keys.UNIT_MAX - keys.UNIT_MIN))
            data[keys.STD] = MetaTensor(std_hu, meta=dict(source.meta))
            data = Invertd(keys.STD, transform=preprocessing, orig_keys=keys.IMAGE, nearest_interp=False)(data)
        data = postprocessing(data)
        hu = data[keys.PRED]
        hu = MetaTensor(hu.as_tensor().float(), meta=hu.meta)
        std_hu = None if std is None else MetaTensor(data[keys.STD].as_tensor().float(), meta=data[keys.STD].meta)
        datasets, uid_seed = None, None
        if path.is_dir():
            datasets = load_series_datasets(path, str(source.meta[SOURCE_SERIES_UID_KEY]))
            uid_seed = str(datasets[0].SeriesInstanceUID)
        else:
            uid_seed = f"nifti-sha256-{_file_digest(path)}"
        affine = np.asarray(hu.affine, dtype=np.float64)
        logger.info("translated %s%s: shape %s", path.name, f" ({domain})" if domain else "", tuple(hu.shape[1:]))
        return SCTResult(hu=hu, std_hu=std_hu, source_datasets=datasets, affine=affine, source=path, uid_seed=uid_seed,
                         domain=domain)

    # ------------------------------------------------------------------ outputs
    def save_nifti(self, result: SCTResult, out_dir: str | os.PathLike, stem: str) -> list[Path]:
        """Write ``<stem>_sct.nii.gz`` (int16 HU) and, with an std map, ``<stem>_sct_std.nii.gz`` (float32 HU).

        Both are written atomically on the source's grid and affine.

        Returns:
            The written paths (sCT first).
        """
        from drdd_med.io.nifti import save_nifti

        out_dir = Path(out_dir)
        hu = np.rint(result.hu[0].numpy()).astype(np.int16)
        paths = [save_nifti(out_dir / f"{stem}{SCT_SUFFIX}", hu, result.affine, np.int16)]
        if result.std_hu is not None:
            std = result.std_hu[0].numpy()
            paths.append(save_nifti(out_dir / f"{stem}{STD_SUFFIX}", std, result.affine, np.float32))
        return paths

    def translate(self, path: str | os.PathLike, out_dir: str | os.PathLike, stem: str | None = None,
                  series_uid: str | None = None, domain: str | None = None) -> list[Path]:
        """:meth:`predict` one input and :meth:`save_nifti` it as ``<out_dir>/<stem>_sct.nii.gz`` (and the std map).

        Args:
            path: NIfTI file or DICOM series folder.
            out_dir: output folder (created).
            stem: output name stem (None: :func:`input_stem` of ``path``).
            series_uid: as in :meth:`predict`.
            domain: as in :meth:`predict`.

        Returns:
            The written paths (sCT first).
        """
        result = self.predict(path, series_uid=series_uid, domain=domain)
        paths = self.save_nifti(result, out_dir, stem or input_stem(path))
        logger.info("wrote %s", ", ".join(str(p) for p in paths))
        return paths

    def save_dicom(self, result: SCTResult, out_dir: str | os.PathLike, **writer_options: Any) -> list[Path]:
        """Write the sCT as a CT Image Storage series into ``out_dir`` (replaced as a whole, atomically).

        UIDs are derived from the source (series UID, or the NIfTI file's content hash) and
        :attr:`output_version`, so re-running writes identical UIDs.

        Args:
            result: from :meth:`predict`.
            out_dir: series folder.
            writer_options: other :func:`~drdd_med.io.dicom_writer.write_sct_series` options.

        Returns:
            Paths of the written files in slice order.
        """
        from drdd_med.io.dicom_writer import write_sct_series

        config = self.config
        r, n = self.steps
        source = config.modality_for(result.domain) + (f" ({result.domain})" if result.domain else "")
        if config.method == "regression":
            description = (f"Synthetic CT from {source} by direct regression {config.mode} "
                           f"({config.preset}), one network evaluation")
        else:
            description = (f"Synthetic CT from {source} by DRDD {config.mode} ({config.preset}), "
                           f"{r}+{n} steps, noise level {config.noise_level:g}, {self.num_samples} sample(s)")
        writer_options.setdefault("derivation_description", description)
        return write_sct_series(result.hu[0].numpy(), result.affine, out_dir, result.source_datasets,
                                model_version=self.output_version, source_uid_seed=result.uid_seed, **writer_options)
