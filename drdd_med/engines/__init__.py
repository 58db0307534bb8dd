"""Training pieces for MONAI engines: prepare-batch objects, stage inferers, the joint trainer and EMA."""

from __future__ import annotations

from drdd_med.engines.ema import ModelEMA
from drdd_med.engines.joint import JointTrainer
from drdd_med.engines.prepare_batch import (
    CoupledPrepareBatch,
    NoisePrepareBatch,
    RegressionPrepareBatch,
    ResidualPrepareBatch,
)
from drdd_med.engines.stage_inferers import CoupledStageInferer, NoiseStageInferer, ResidualStageInferer

__all__ = [
    "NoisePrepareBatch",
    "ResidualPrepareBatch",
    "CoupledPrepareBatch",
    "RegressionPrepareBatch",
    "NoiseStageInferer",
    "ResidualStageInferer",
    "CoupledStageInferer",
    "JointTrainer",
    "ModelEMA",
]
