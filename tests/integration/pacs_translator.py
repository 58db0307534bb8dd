"""A small real translator for the PACS tests: a fixed linear MR -> HU map on the series read by ``load_series``.

It stands in for the bundle model (``drdd-med translate``): the job sees the same Translator protocol, reads the
retrieved MR series and writes a real sCT DICOM series with deterministic UIDs.
"""

from __future__ import annotations

import time
from pathlib import Path

from drdd_med.io.dicom_series import load_series
from drdd_med.io.dicom_writer import write_sct_series

__all__ = ["LinearTranslator", "build", "MODEL_VERSION"]

MODEL_VERSION = "test-linear-1"


class LinearTranslator:
    """HU = ``scale`` * MR + ``offset`` (clipped to the CT window by the writer).

    Args:
        delay_s: sleep per series, to make a job slow enough to be killed or interrupted mid-pass.
        on_translate: optional callback run after each translation (e.g. stop the PACS).
    """

    model_version = MODEL_VERSION

    def __init__(self, scale: float = 2.0, offset: float = -1000.0, delay_s: float = 0.0, on_translate=None):
        self.scale, self.offset, self.delay_s = scale, offset, delay_s
        self.on_translate = on_translate
        self.calls = 0

    def translate_series(self, series_dir: Path, out_dir: Path) -> list[Path]:
        image, datasets = load_series(series_dir)
        hu = image[0].numpy() * self.scale + self.offset
        if self.delay_s:
            time.sleep(self.delay_s)
        files = write_sct_series(hu, image.affine.numpy(), out_dir, datasets, model_version=self.model_version)
        self.calls += 1
        if self.on_translate is not None:
            self.on_translate(self.calls)
        return files


def build(config) -> LinearTranslator:
    """Factory for ``"translator": "pacs_translator:build"``; ``inference.delay_s`` slows each series down."""
    return LinearTranslator(delay_s=float(config.inference.get("delay_s", 0.0)))
