"""Where the bundle lives, independent of the current working directory.

MONAI's ``bundle_root`` defaults to ``"."`` (the cwd), so a run started from the repository root would write
``./models``. The bundle configs instead evaluate :func:`bundle_root`, which finds the folder of the first config
file of the running :class:`monai.bundle.ConfigWorkflow` (``bundles/drdd`` for the README command), so outputs
land under the bundle whatever the cwd holds. ``--bundle_root DIR`` still overrides it.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

__all__ = ["bundle_root", "default_bundle_dir"]


def default_bundle_dir() -> Path:
    """The ``bundles/drdd`` folder of a source checkout (editable install), else ``./bundles/drdd``."""
    checkout = Path(__file__).resolve().parents[2] / "bundles" / "drdd"
    return checkout if checkout.is_dir() else Path.cwd() / "bundles" / "drdd"


def _running_workflow_root() -> Path | None:
    """The config folder of the ConfigWorkflow whose expressions are being evaluated, if any."""
    from monai.bundle import ConfigWorkflow

    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, ConfigWorkflow):
                return Path(candidate.config_root_path)
            frame = frame.f_back
    finally:
        del frame
    return None


def bundle_root() -> str:
    """Absolute path of the running bundle (the folder holding ``train.json``), as a string for configs."""
    root = _running_workflow_root() or default_bundle_dir()
    return os.path.abspath(root)
