"""The model behind the batch job: a :class:`Translator` turns a retrieved MR series folder into an sCT series.

The default is the DRDD bundle, run exactly as ``drdd-med translate`` runs it (``SCTPredictor``: same
preprocessing, sampler, inversion to the native grid and DICOM writer). A site can plug another model with
``"translator": "package.module:factory"`` in ``pacs.json``; ``factory(config)`` returns a Translator.

For a model trained on several source domains, a selection rule may name the domain of its series (``"domain"``);
the job then passes it as ``translate_series(..., domain=...)``; without one, the bundle translator reads the
domain from the series' headers. A bundle that lacks a domain the rules name is refused when it is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from drdd_med.pacs.config import PacsConfig

__all__ = ["Translator", "BundleTranslator", "build_translator", "INFERENCE_KEYS"]

#: ``inference`` keys of ``pacs.json`` -> ``SCTPredictor`` arguments.
INFERENCE_KEYS = {"residual_steps": "residual_steps", "noise_steps": "noise_steps", "samples": "num_samples",
                  "device": "device", "seed": "seed", "precision": "precision",
                  "threads": "threads"}


@runtime_checkable
class Translator(Protocol):
    """MR series folder -> sCT DICOM series.

    Attributes:
        model_version: identifies the model and sampling settings; part of the sCT UIDs and of the journal key,
            so a new version processes every series again.
    """

    model_version: str

    def translate_series(self, series_dir: Path, out_dir: Path) -> list[Path]:
        """Read the MR series in ``series_dir``, write the sCT series files into ``out_dir``, return their paths.

        The job has read and checked the headers of ``series_dir`` already: a reader built on
        :mod:`drdd_med.io.dicom_series` (``load_series``, ``DicomSeriesReader``) gets them without parsing the
        files again and decodes the pixels, which the job does not. When the matching selection rule names a source
        domain, the job calls ``translate_series(series_dir, out_dir, domain=...)``: a translator used with such
        rules accepts that keyword.
        """


class BundleTranslator:
    """A :class:`Translator` over ``drdd_med.workflows.predictor.SCTPredictor`` (what ``drdd-med translate`` uses).

    Args:
        predictor: a loaded ``SCTPredictor``.
    """

    def __init__(self, predictor: Any):
        self.predictor = predictor
        self.model_version = str(predictor.output_version)

    def translate_series(self, series_dir: Path, out_dir: Path, domain: str | None = None) -> list[Path]:
        result = self.predictor.predict(series_dir, domain=domain)
        return list(self.predictor.save_dicom(result, out_dir))


def _bundle_translator(bundle: Path | None, inference: dict[str, Any],
                       selection_domains: dict[str, str] | None = None) -> BundleTranslator:
    if bundle is None:
        raise ValueError("the config has no 'bundle': set it to the DRDD bundle folder (or set 'translator')")
    unknown = sorted(set(inference) - set(INFERENCE_KEYS))
    if unknown:
        raise ValueError(f"inference: unknown option(s) {unknown}; allowed {sorted(INFERENCE_KEYS)}")
    try:
        from drdd_med.workflows.predictor import SCTPredictor
    except ImportError as exc:
        raise RuntimeError(f"bundle translation is not available in this installation ({exc}); set 'translator' "
                           "to a 'module:factory' path instead") from exc
    options = {INFERENCE_KEYS[k]: v for k, v in inference.items()}
    try:
        predictor = SCTPredictor.from_bundle(bundle, **options)
    except FileNotFoundError as exc:
        raise ValueError(f"bundle {bundle}: {exc}") from exc
    for name, domain in (selection_domains or {}).items():  # a rule the model cannot serve fails every series
        predictor.config.resolve_domain(domain, f"rules selection {name!r} (bundle {bundle})")
    return BundleTranslator(predictor)


def build_translator(config: PacsConfig) -> Translator:
    """Build the translator named by the config.

    ``translator: "package.module:factory"`` calls ``factory(config)``; otherwise the bundle translator is built
    from ``bundle`` and ``inference`` (``residual_steps``, ``noise_steps``, ``samples``, ``device``, ``seed``,
    ``precision``, ``threads``).

    Raises:
        ValueError: no bundle or an untrained one, unknown inference options, a selection rule naming a source
            domain the bundle's model was not trained on, or a factory that is not importable or returns no
            Translator.
        RuntimeError: the bundle translator is not available in this installation.
    """
    if config.translator:
        module_name, attr = config.translator.split(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"translator {config.translator!r} cannot be imported ({exc}); check the dotted path "
                             "and that its package is on PYTHONPATH") from exc
        translator = factory(config)
    else:
        translator = _bundle_translator(config.bundle, dict(config.inference), config.selection_domains)
    if not isinstance(translator, Translator):
        raise ValueError(f"translator {type(translator).__name__} lacks model_version / translate_series()")
    return translator
