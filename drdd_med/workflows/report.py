"""Bundle reports: score a trained bundle on a spec split against real CT and two trivial baselines.

Used by ``train.json`` (the validation report written after training) and ``evaluate.json``. Both translate whole
volumes with :class:`~drdd_med.workflows.predictor.SCTPredictor` (full 2 + 2 sampling, native grid, HU) and write
``metrics.json``, ``metrics.csv`` and one MR | sCT | CT | |error| montage per case with
:func:`~drdd_med.workflows.evaluate.evaluate_cases`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from drdd_med.data.spec import DatasetSpec
from drdd_med.workflows.stages import is_rank0

__all__ = ["evaluate_bundle"]

logger = logging.getLogger(__name__)


def evaluate_bundle(model_dir: str | os.PathLike, spec: DatasetSpec, out_dir: str | os.PathLike,
                    split: str = "validation", device: Any = "auto", baselines: bool = True, montage: bool = True,
                    residual_steps: int | None = None, noise_steps: int | None = None, num_samples: int = 1,
                    seed: int = 0, precision: str = "auto") -> dict[str, Any] | None:
    """Translate and score every case of ``split`` with the bundle's trained model; log a table of the means.

    Args:
        model_dir: folder holding ``model.pt`` and ``model_config.json`` (``<bundle>/models``).
        spec: the data spec.
        out_dir: output folder for ``metrics.json``, ``metrics.csv`` and ``montages/``.
        split: ``"validation"`` or ``"test"`` (falls back to the other one when it has no case with a CT).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``... (a ``torch.device`` is accepted too).
        baselines: also score the constant-water and the linear MR->HU baselines.
        montage: write the per-case montages.
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
    from drdd_med.workflows.data import evaluation_cases
    from drdd_med.workflows.evaluate import evaluate_cases, format_table, trivial_baselines
    from drdd_med.workflows.model_config import MODEL_CONFIG_NAME, MODEL_WEIGHTS_NAME, ModelConfig, load_weights
    from drdd_med.workflows.predictor import SCTPredictor

    cases = evaluation_cases(spec, split)
    config = ModelConfig.load(Path(model_dir) / MODEL_CONFIG_NAME)
    network = load_weights(config.build_network(), Path(model_dir) / MODEL_WEIGHTS_NAME)
    predictor = SCTPredictor(network, config, device=str(device), residual_steps=residual_steps,
                             noise_steps=noise_steps, num_samples=num_samples, seed=seed,
                             precision=precision, threads=torch.get_num_threads())
    methods = trivial_baselines(spec.items("training"), predictor.config.source_normalize) if baselines else {}
    result = evaluate_cases(cases, lambda source: predictor.predict(source).hu, out_dir, baselines=methods,
                            montage=montage)
    logger.info("%d case(s), metrics in HU inside the body mask (%s):\n%s", len(cases), Path(out_dir) / "metrics.json",
                format_table(result))
    return result
