"""Bundle reports: score a trained model on a spec split against real CT, trivial baselines and the phantom's floor.

:func:`evaluate_predictor` is the one evaluation of a model on a spec: ``drdd-med evaluate`` calls it with the
predictor it loaded, and :func:`evaluate_bundle` (``train.json``'s validation report after training, and
``evaluate.json``) with one built from ``<bundle>/models``. The model translates whole volumes with
:class:`~drdd_med.workflows.predictor.SCTPredictor` (full sampling, native grid, HU), and
:func:`~drdd_med.workflows.evaluate.evaluate_cases` writes ``metrics.json``, ``metrics.csv`` and one
MR | sCT | CT | |error| montage per case.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from drdd_med import keys
from drdd_med.data.spec import DatasetSpec
from drdd_med.workflows.stages import is_rank0

__all__ = ["evaluate_bundle", "evaluate_predictor"]

logger = logging.getLogger(__name__)


def evaluate_predictor(predictor: Any, spec: DatasetSpec, out_dir: str | os.PathLike, split: str = "validation",
                       baselines: bool = True, montage: bool = True) -> dict[str, Any]:
    """Translate and score the cases of ``split`` that have a CT; log a table of the means.

    Args:
        predictor: an :class:`~drdd_med.workflows.predictor.SCTPredictor`.
        spec: the data spec.
        out_dir: output folder for ``metrics.json``, ``metrics.csv`` and ``montages/``.
        split: ``"training"``, ``"validation"`` or ``"test"``; when it has no case with a CT, the other held-out
            split is scored instead, with a warning (:func:`~drdd_med.workflows.data.evaluation_cases`).
        baselines: also score the constant-water baseline, a linear MR->HU fit on the training pairs and, on the
            phantom's MR, its segmentation oracle (``trivial_baselines``).
        montage: write the per-case montages.

    Returns:
        The :func:`~drdd_med.workflows.evaluate.evaluate_cases` result.
    """
    from drdd_med.workflows.data import evaluation_cases
    from drdd_med.workflows.evaluate import evaluate_cases, format_table, trivial_baselines

    cases = evaluation_cases(spec, split)
    methods = trivial_baselines(spec.items("training"), predictor.config.source_normalize, cases) if baselines else {}
    domains = {case[keys.SOURCE]: case.get(keys.DOMAIN) for case in cases}  # each case as the domain it names
    result = evaluate_cases(cases, lambda source: predictor.predict(source, domain=domains[source]).hu, out_dir,
                            baselines=methods, montage=montage)
    logger.info("%d case(s), metrics in HU inside the body mask (%s):\n%s", len(cases), Path(out_dir) / "metrics.json",
                format_table(result))
    return result


def evaluate_bundle(model_dir: str | os.PathLike, spec: DatasetSpec, out_dir: str | os.PathLike,
                    split: str = "validation", device: Any = "auto", baselines: bool = True, montage: bool = True,
                    residual_steps: int | None = None, noise_steps: int | None = None, num_samples: int = 1,
                    seed: int = 0, precision: str = "auto") -> dict[str, Any] | None:
    """:func:`evaluate_predictor` with the trained model of ``model_dir``, on rank 0 only.

    Args:
        model_dir: folder holding ``model.pt`` and ``model_config.json`` (``<bundle>/models``).
        spec: the data spec.
        out_dir: output folder.
        split: as in :func:`evaluate_predictor`.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``... (a ``torch.device`` is accepted too).
        baselines: as in :func:`evaluate_predictor`.
        montage: as in :func:`evaluate_predictor`.
        residual_steps: residual sampling steps (None: the model's).
        noise_steps: noise sampling steps (None: the model's).
        num_samples: samples averaged per case.
        seed: seed of the noise field.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (:mod:`drdd_med.runtime`).

    Returns:
        The :func:`~drdd_med.workflows.evaluate.evaluate_cases` result (None on ranks > 0).
    """
    if not is_rank0():
        return None
    from drdd_med.workflows.model_config import MODEL_CONFIG_NAME, MODEL_WEIGHTS_NAME, ModelConfig, load_weights
    from drdd_med.workflows.predictor import SCTPredictor

    config = ModelConfig.load(Path(model_dir) / MODEL_CONFIG_NAME)
    network = load_weights(config.build_network(), Path(model_dir) / MODEL_WEIGHTS_NAME)
    predictor = SCTPredictor(network, config, device=str(device), residual_steps=residual_steps,
                             noise_steps=noise_steps, num_samples=num_samples, seed=seed,
                             precision=precision, threads=torch.get_num_threads())
    return evaluate_predictor(predictor, spec, out_dir, split, baselines=baselines, montage=montage)
